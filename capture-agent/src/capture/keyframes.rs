//! Bounds the media one fragment can hold when the encoder ignores its key-frame interval.
//!
//! Fragments are cut only on video key frames (`fmp4.rs`), so an encoder that stops
//! producing them (a driver ignoring its GOP setting, a huge `key-int-max`) would make the
//! regrouper queue media without limit. A probe on the
//! encoder's output watches the GOP in progress:
//!
//! * once the key frame is overdue (the GOP is longer than a fragment plus a quarter, or
//!   holds more than half of [`MAX_GOP_BYTES`]) it sends the encoder a force-key-unit event,
//!   again every half fragment while none comes; every encoder the agent picks honours it
//!   (GstVideoEncoder);
//! * if the GOP still reaches [`MAX_GOP_FRAGMENTS`] fragments of media or [`MAX_GOP_BYTES`],
//!   the encoder ignores key-frame requests too: the capture fails with an error rather
//!   than buffer further, and nothing more reaches the muxer.

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_video as gst_video;

/// No fragment may hold more than this many fragments' worth of media…
pub(super) const MAX_GOP_FRAGMENTS: u64 = 3;
/// …nor more than this many bytes of video.
pub(super) const MAX_GOP_BYTES: u64 = 16 << 20;

#[derive(Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    Pass,
    RequestKeyFrame,
    Fail(String),
}

/// The GOP in progress, fed with every encoded video buffer.
#[derive(Debug)]
pub(super) struct Guard {
    fragment_ns: u64,
    gop_start_ns: Option<u64>,
    gop_bytes: u64,
    requested_at_ns: Option<u64>,
    failed: bool,
}

impl Guard {
    pub(super) fn new(fragment_ms: u32) -> Self {
        Self {
            fragment_ns: u64::from(fragment_ms) * 1_000_000,
            gop_start_ns: None,
            gop_bytes: 0,
            requested_at_ns: None,
            failed: false,
        }
    }

    pub(super) fn on_buffer(&mut self, pts_ns: Option<u64>, size: u64, key_frame: bool) -> Verdict {
        if self.failed {
            return Verdict::Fail(String::new());
        }
        if key_frame || self.gop_start_ns.is_none() {
            self.gop_start_ns = pts_ns.or(self.gop_start_ns);
            self.gop_bytes = size;
            self.requested_at_ns = None;
            return Verdict::Pass;
        }
        self.gop_bytes += size;
        let (Some(start), Some(pts)) = (self.gop_start_ns, pts_ns) else {
            return Verdict::Pass;
        };
        let age = pts.saturating_sub(start);
        if age >= MAX_GOP_FRAGMENTS * self.fragment_ns || self.gop_bytes > MAX_GOP_BYTES {
            self.failed = true;
            return Verdict::Fail(format!(
                "the video encoder made no key frame for {} ms ({} bytes) despite being asked: \
                 refusing to buffer a fragment without limit",
                age / 1_000_000,
                self.gop_bytes
            ));
        }
        let overdue =
            age >= self.fragment_ns + self.fragment_ns / 4 || self.gop_bytes > MAX_GOP_BYTES / 2;
        let asked_recently = self
            .requested_at_ns
            .is_some_and(|at| pts.saturating_sub(at) < self.fragment_ns / 2);
        if overdue && !asked_recently {
            self.requested_at_ns = Some(pts);
            return Verdict::RequestKeyFrame;
        }
        Verdict::Pass
    }
}

/// Installs the guard on the encoder's source pad.
pub(super) fn install(encoder: &gst::Element, fragment_ms: u32) {
    let Some(pad) = encoder.static_pad("src") else {
        tracing::warn!("the video encoder has no src pad; key frames are not guarded");
        return;
    };
    let guard = std::sync::Mutex::new(Guard::new(fragment_ms));
    let encoder = encoder.downgrade();
    pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
        let Some(buffer) = info.buffer() else {
            return gst::PadProbeReturn::Ok;
        };
        let key = !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT);
        let Ok(mut guard) = guard.lock() else {
            return gst::PadProbeReturn::Ok;
        };
        match guard.on_buffer(
            buffer.pts().map(gst::ClockTime::nseconds),
            buffer.size() as u64,
            key,
        ) {
            Verdict::Pass => gst::PadProbeReturn::Ok,
            Verdict::RequestKeyFrame => {
                tracing::warn!("key frame overdue: asking the video encoder for one");
                let event = gst_video::UpstreamForceKeyUnitEvent::builder()
                    .all_headers(true)
                    .build();
                // The event enters the encoder through the pad it pushes from.
                pad.send_event(event);
                gst::PadProbeReturn::Ok
            }
            Verdict::Fail(message) => {
                if let (false, Some(encoder)) = (message.is_empty(), encoder.upgrade()) {
                    gst::element_error!(encoder, gst::StreamError::Encode, ["{}", message]);
                }
                gst::PadProbeReturn::Drop
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn asks_for_a_key_frame_when_overdue_then_fails_at_the_bound() {
        let mut g = Guard::new(2000);
        let frame = 66_666_667;
        let mut verdicts = Vec::new();
        for i in 0..200u64 {
            let v = g.on_buffer(Some(i * frame), 4000, i == 0);
            if v != Verdict::Pass {
                verdicts.push((i * frame / MS, v));
            }
            if matches!(verdicts.last(), Some((_, Verdict::Fail(_)))) {
                break;
            }
        }
        let at: Vec<_> = verdicts
            .iter()
            .map(|(t, v)| (*t, matches!(v, Verdict::Fail(_))))
            .collect();
        // Asked at 2.5 s, then every second; failed at 6 s.
        assert_eq!(
            at,
            vec![
                (2533, false),
                (3533, false),
                (4533, false),
                (5533, false),
                (6000, true)
            ]
        );
    }

    #[test]
    fn regular_gops_pass_and_bytes_are_bounded_too() {
        let mut g = Guard::new(2000);
        for i in 0..300u64 {
            assert_eq!(
                g.on_buffer(Some(i * 66 * MS), 5000, i % 30 == 0),
                Verdict::Pass,
                "frame {i}"
            );
        }
        let mut g = Guard::new(2000);
        assert_eq!(g.on_buffer(Some(0), 100, true), Verdict::Pass);
        assert_eq!(
            g.on_buffer(Some(MS), 9 << 20, false),
            Verdict::RequestKeyFrame
        );
        assert!(matches!(
            g.on_buffer(Some(2 * MS), 8 << 20, false),
            Verdict::Fail(_)
        ));
        assert!(
            matches!(g.on_buffer(Some(3 * MS), 1, true), Verdict::Fail(_)),
            "failure is final"
        );
    }
}
