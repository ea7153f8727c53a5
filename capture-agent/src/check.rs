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
use serde::Serialize;
use std::time::{Duration, Instant};

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
        self.lines.push(Line { what, ok, detail: detail.into() });
    }

    /// The report as the candidate reads it.
    pub fn to_text(&self) -> String {
        let label = |w: &str| match w {
            "camera" => "Caméra",
            "microphone" => "Microphone",
            "encoder" => "Encodage vidéo",
            "disk" => "Espace disque",
            "server" => "Serveur",
            "upload" => "Connexion (envoi)",
            other => other,
        }
        .to_owned();
        let mut out = String::from("CLOE Connect : vérification de l'ordinateur (rien n'est enregistré)\n\n");
        for l in &self.lines {
            out.push_str(&format!("  {:<20} {} {}\n", label(l.what), if l.ok { "OK " } else { "NON" }, l.detail));
        }
        out.push_str(if self.fit {
            "\nVerdict : cet ordinateur est prêt pour l'épreuve.\n"
        } else {
            "\nVerdict : cet ordinateur n'est pas prêt ; corrigez les lignes marquées NON puis relancez la vérification.\n"
        });
        out
    }
}

/// Opens the devices for up to `within`; a camera is fine once it gave a frame, a
/// microphone once it gave sound buffers.
fn try_devices(source: &Source, within: Duration, report: &mut Report) {
    let listed = match devices::list(source) {
        Ok(l) => l,
        Err(e) => {
            report.push("camera", false, format!("détection impossible ({e})"));
            report.push("microphone", false, "détection impossible");
            return;
        }
    };
    let chosen = match devices::choose(&listed, None, None) {
        Ok(c) => c,
        Err(m) => {
            let camera = !listed.cameras.is_empty();
            report.push("camera", camera, if camera { listed.cameras[0].label.clone() } else { "aucune caméra trouvée".into() });
            let mic = m != Missing::Microphone && !listed.microphones.is_empty();
            report.push("microphone", mic, if mic { listed.microphones[0].label.clone() } else { "aucun microphone trouvé".into() });
            return;
        }
    };
    let others = |list: &[devices::Device]| if list.len() > 1 { format!(" ({} disponibles)", list.len()) } else { String::new() };
    match Preview::start(&chosen) {
        Ok(p) => {
            let deadline = Instant::now() + within;
            while (p.sight.frames() == 0 || p.sight.sound_buffers() == 0) && p.sight.failure().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let (frames, sound) = (p.sight.frames() > 0, p.sight.sound_buffers() > 0);
            report.push("camera", frames, format!("{}{}{}", chosen.camera.label, others(&listed.cameras), if frames { ", image reçue" } else { ", aucune image reçue" }));
            report.push("microphone", sound, format!("{}{}{}", chosen.microphone.label, others(&listed.microphones), if sound { ", son reçu" } else { ", aucun son reçu" }));
        }
        Err(e) => {
            report.push("camera", false, format!("{} ne s'ouvre pas ({e})", chosen.camera.label));
            report.push("microphone", false, chosen.microphone.label.to_string());
        }
    }
}

pub async fn run(api: &Api, source: Source, spool_dir: &std::path::Path) -> Report {
    let mut report = Report { fit: false, lines: Vec::new() };
    report = tokio::task::spawn_blocking(move || {
        try_devices(&source, Duration::from_secs(8), &mut report);
        report
    })
    .await
    .unwrap_or_else(|_| Report { fit: false, lines: vec![Line { what: "camera", ok: false, detail: "la vérification a échoué".into() }] });
    match crate::capture::pick_encoder() {
        Ok(e) => {
            let where_ = if crate::capture::hardware_encoder(&e) { "carte graphique" } else { "processeur" };
            report.push("encoder", true, format!("{e} ({where_})"));
        }
        Err(e) => report.push("encoder", false, format!("aucun encodeur H.264 ({e})")),
    }
    // The spool's disk: the nearest existing ancestor of the spool directory.
    let mut dir = spool_dir.to_path_buf();
    while !dir.exists() && dir.pop() {}
    match fs4::available_space(&dir) {
        Ok(free) => {
            let d = disk_verdict(free);
            report.push("disk", d.verdict != "too_low", format!("{} Mo libres{}", d.free_mb, if d.verdict == "low" { " (faible : qualité réduite)" } else { "" }));
        }
        Err(e) => report.push("disk", false, format!("mesure impossible ({e})")),
    }
    match api.notice().await {
        Ok(n) => report.push("server", true, format!("joignable, notice {}", n.version)),
        Err(f) => report.push("server", false, format!("injoignable ({f})")),
    }
    let kbps = api.upload_test(512 * 1024).await.ok();
    let v = upload_verdict(kbps);
    let detail = match (v.verdict, kbps) {
        ("unreachable", _) | (_, None) => "test impossible".to_owned(),
        (verdict, Some(k)) => format!("{k} kbit/s{}", if verdict == "slow" { " (lente : une partie sera envoyée après l'épreuve)" } else { "" }),
    };
    report.push("upload", matches!(v.verdict, "good" | "slow"), detail);
    report.fit = report.lines.iter().all(|l| l.ok);
    report
}
