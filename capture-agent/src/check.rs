//! `capture-agent check --server URL`: the practice session's checks, nothing recorded.
//! The camera and the microphone are opened for a few seconds (a frame, sound buffers),
//! the encoder is chosen as the exam would, the spool's disk is measured, the server is
//! asked for its notice and sent a short upload test. A report in plain French, or JSON;
//! fit when every line is.

use crate::board::{disk_verdict, upload_verdict};
use crate::capture::devices::{self, Missing};
use crate::capture::preview::Preview;
use crate::capture::Source;
use crate::client::Api;
use crate::messages::check as text;
use serde::Serialize;
use std::time::{Duration, Instant};

#[cfg(test)]
#[test]
fn rates_read_plainly() {
    assert_eq!(
        (rate(850), rate(6_105_245), rate(1000)),
        (
            "850 kbit/s".into(),
            "6105,2 Mbit/s".into(),
            "1,0 Mbit/s".into()
        )
    );
}

#[derive(Debug, Serialize)]
pub struct Line {
    /// `camera`, `microphone`, `encoder`, `disk`, `server`, `upload`.
    pub what: &'static str,
    pub ok: bool,
    pub detail: String,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub fit: bool,
    pub lines: Vec<Line>,
}

impl Report {
    fn push(&mut self, what: &'static str, ok: bool, detail: impl Into<String>) {
        self.lines.push(Line {
            what,
            ok,
            detail: detail.into(),
        });
    }

    /// The report as the candidate reads it.
    pub fn to_text(&self) -> String {
        let t = text();
        let label = |w: &'static str| {
            t.labels
                .iter()
                .find(|(k, _)| *k == w)
                .map_or(w, |(_, v)| *v)
        };
        let mut out = format!("{}\n\n", t.title);
        for l in &self.lines {
            out.push_str(&format!(
                "  {:<20} {} {}\n",
                label(l.what),
                if l.ok { t.ok } else { t.not_ok },
                l.detail
            ));
        }
        out.push_str(&format!("\n{}\n", if self.fit { t.fit } else { t.unfit }));
        out
    }
}

/// Opens the devices for up to `within`; a camera is fine once it gave a frame, a
/// microphone once it gave sound buffers.
fn try_devices(source: &Source, within: Duration, report: &mut Report) {
    let t = text();
    let listed = match devices::list(source) {
        Ok(l) => l,
        Err(e) => {
            report.push("camera", false, format!("{} ({e})", t.detection_failed));
            report.push("microphone", false, t.detection_failed);
            return;
        }
    };
    let chosen = match devices::choose(&listed, None, None) {
        Ok(c) => c,
        Err(m) => {
            let camera = !listed.cameras.is_empty();
            report.push(
                "camera",
                camera,
                if camera {
                    listed.cameras[0].label.clone()
                } else {
                    t.no_camera.into()
                },
            );
            let mic = m != Missing::Microphone && !listed.microphones.is_empty();
            report.push(
                "microphone",
                mic,
                if mic {
                    listed.microphones[0].label.clone()
                } else {
                    t.no_microphone.into()
                },
            );
            return;
        }
    };
    let others = |list: &[devices::Device]| {
        if list.len() > 1 {
            format!(" ({} {})", list.len(), t.available)
        } else {
            String::new()
        }
    };
    match Preview::start(&chosen) {
        Ok(p) => {
            let deadline = Instant::now() + within;
            while (p.sight.frames() == 0 || p.sight.sound_buffers() == 0)
                && p.sight.failure().is_none()
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(50));
            }
            let (frames, sound) = (p.sight.frames() > 0, p.sight.sound_buffers() > 0);
            report.push(
                "camera",
                frames,
                format!(
                    "{}{}{}",
                    chosen.camera.label,
                    others(&listed.cameras),
                    if frames { t.frame.0 } else { t.frame.1 }
                ),
            );
            report.push(
                "microphone",
                sound,
                format!(
                    "{}{}{}",
                    chosen.microphone.label,
                    others(&listed.microphones),
                    if sound { t.sound.0 } else { t.sound.1 }
                ),
            );
        }
        Err(e) => {
            report.push(
                "camera",
                false,
                format!("{} {} ({e})", chosen.camera.label, t.does_not_open),
            );
            report.push("microphone", false, chosen.microphone.label.to_string());
        }
    }
}

/// An uplink as a person reads it: "850 kbit/s", "6,1 Mbit/s".
fn rate(kbit_per_s: u64) -> String {
    if kbit_per_s >= 1000 {
        format!("{},{} Mbit/s", kbit_per_s / 1000, kbit_per_s % 1000 / 100)
    } else {
        format!("{kbit_per_s} kbit/s")
    }
}

pub async fn run(api: &Api, source: Source, spool_dir: &std::path::Path) -> Report {
    let t = text();
    let mut report = Report {
        fit: false,
        lines: Vec::new(),
    };
    report = tokio::task::spawn_blocking(move || {
        try_devices(&source, Duration::from_secs(8), &mut report);
        report
    })
    .await
    .unwrap_or_else(|_| Report {
        fit: false,
        lines: vec![Line {
            what: "camera",
            ok: false,
            detail: t.check_failed.into(),
        }],
    });
    match crate::capture::pick_encoder() {
        Ok(e) => {
            let where_ = if e.hardware() { t.gpu } else { t.cpu };
            report.push("encoder", true, format!("{e} ({where_})"));
        }
        Err(e) => report.push("encoder", false, format!("{} ({e})", t.no_encoder)),
    }
    // The spool's disk: the nearest existing ancestor of the spool directory.
    let mut dir = spool_dir.to_path_buf();
    while !dir.exists() && dir.pop() {}
    match fs4::available_space(&dir) {
        Ok(free) => {
            let d = disk_verdict(free);
            report.push(
                "disk",
                d.verdict != "too_low",
                format!(
                    "{} {}{}",
                    d.free_mb,
                    t.free,
                    if d.verdict == "low" { t.low } else { "" }
                ),
            );
        }
        Err(e) => report.push("disk", false, format!("{} ({e})", t.unmeasured)),
    }
    match api.notice().await {
        Ok(n) => report.push("server", true, format!("{} {}", t.reachable, n.version)),
        Err(f) => report.push("server", false, format!("{} ({f})", t.unreachable)),
    }
    let kbps = api.upload_test(512 * 1024).await.ok();
    let v = upload_verdict(kbps);
    let detail = match (v.verdict, kbps) {
        ("unreachable", _) | (_, None) => t.untested.to_owned(),
        (verdict, Some(k)) => format!("{}{}", rate(k), if verdict == "slow" { t.slow } else { "" }),
    };
    report.push("upload", matches!(v.verdict, "good" | "slow"), detail);
    report.fit = report.lines.iter().all(|l| l.ok);
    report
}
