//! The activity strip and thumbnails, computed on the agent from the raw frames and samples
//! before encoding (the server never decodes video): per second, the amount of motion
//! (mean absolute difference between consecutive 64x48 grey frames) and the audio level
//! (RMS); per fragment, one 160x120 JPEG. No biometrics: no face, no gaze, no score.
//! Both ride sealed in the fragment's payload (`protocol::encode_payload`).

use protocol::Activity;
use std::collections::{BTreeMap, VecDeque};

/// How many thumbnails wait for their fragment (one per second is made).
const THUMBS_KEPT: usize = 8;

#[derive(Default)]
pub(super) struct Analysis {
    first_video_ns: Option<u64>,
    first_audio_ns: Option<u64>,
    previous: Option<Vec<u8>>,
    /// Second of the stream → (sum of per-frame mean differences, frames).
    motion: BTreeMap<u32, (f64, u32)>,
    /// Second → (sum of squared normalised samples, samples).
    audio: BTreeMap<u32, (f64, u64)>,
    /// (time since the first frame, JPEG).
    thumbs: VecDeque<(u64, Vec<u8>)>,
}

/// 0–100 from a mean absolute difference of 0–255, on a square-root scale so that a
/// person moving shows well above a camera's noise (about 1–2).
fn motion_level(mad: f64) -> u8 {
    (100.0 * (mad / 64.0).sqrt()).round().clamp(0.0, 100.0) as u8
}

/// 0–100 from an RMS of 0–1: -60 dBFS and below is 0, full scale 100.
fn audio_level(rms: f64) -> u8 {
    if rms <= 0.0 {
        return 0;
    }
    ((20.0 * rms.log10() + 60.0) / 60.0 * 100.0)
        .round()
        .clamp(0.0, 100.0) as u8
}

impl Analysis {
    pub fn video_frame(&mut self, pts_ns: u64, gray: &[u8]) {
        let origin = *self.first_video_ns.get_or_insert(pts_ns);
        let second = (pts_ns.saturating_sub(origin) / 1_000_000_000) as u32;
        if let Some(prev) = self
            .previous
            .as_ref()
            .filter(|p| p.len() == gray.len() && !gray.is_empty())
        {
            let sum: u64 = prev
                .iter()
                .zip(gray)
                .map(|(a, b)| u64::from(a.abs_diff(*b)))
                .sum();
            let e = self.motion.entry(second).or_default();
            e.0 += sum as f64 / gray.len() as f64;
            e.1 += 1;
        }
        self.previous = Some(gray.to_vec());
    }

    /// Signed 16-bit little-endian mono samples.
    pub fn audio_samples(&mut self, pts_ns: u64, s16le: &[u8]) {
        let origin = *self.first_audio_ns.get_or_insert(pts_ns);
        let second = (pts_ns.saturating_sub(origin) / 1_000_000_000) as u32;
        let e = self.audio.entry(second).or_default();
        for s in s16le.chunks_exact(2) {
            let v = f64::from(i16::from_le_bytes([s[0], s[1]])) / 32768.0;
            e.0 += v * v;
            e.1 += 1;
        }
    }

    pub fn thumbnail(&mut self, pts_ns: u64, jpeg: &[u8]) {
        let origin = *self.first_video_ns.get_or_insert(pts_ns);
        self.thumbs
            .push_back((pts_ns.saturating_sub(origin), jpeg.to_vec()));
        while self.thumbs.len() > THUMBS_KEPT {
            self.thumbs.pop_front();
        }
    }

    /// The activity of the seconds that start within `[start, end)` of media time, and the
    /// first thumbnail taken from `start` on (or the last one before it). What is older
    /// than the fragment is dropped: memory stays bounded over hours.
    pub fn side_for(&mut self, start_us: u64, end_us: u64) -> (Activity, Vec<u8>) {
        let first_s = (start_us / 1_000_000) as u32;
        let last_s = (end_us.saturating_sub(1) / 1_000_000) as u32;
        let mut activity = Activity {
            first_s,
            motion: Vec::new(),
            audio: Vec::new(),
        };
        for s in first_s..=last_s.max(first_s) {
            activity.motion.push(
                self.motion
                    .get(&s)
                    .map(|(sum, n)| motion_level(sum / f64::from((*n).max(1))))
                    .unwrap_or(0),
            );
            activity.audio.push(
                self.audio
                    .get(&s)
                    .map(|(sq, n)| audio_level((sq / (*n).max(1) as f64).sqrt()))
                    .unwrap_or(0),
            );
        }
        self.motion.retain(|s, _| *s + 1 >= first_s);
        self.audio.retain(|s, _| *s + 1 >= first_s);
        let start_ns = start_us * 1000;
        let thumb = self
            .thumbs
            .iter()
            .find(|(t, _)| *t + 100_000_000 >= start_ns && *t < end_us * 1000)
            .or_else(|| self.thumbs.iter().rev().find(|(t, _)| *t < start_ns))
            .map(|(_, j)| j.clone())
            .unwrap_or_default();
        self.thumbs.retain(|(t, _)| *t + 2_000_000_000 >= start_ns);
        (activity, thumb)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn motion_and_sound_show_where_they_happen() {
        let mut a = Analysis::default();
        let still = vec![10u8; 64 * 48];
        let mut moved = still.clone();
        moved[..1536].fill(200); // half the picture changes
                                 // Second 0: still frames; second 1: alternating frames.
        for i in 0..15u64 {
            a.video_frame(i * 66_666_666, &still);
        }
        for i in 15..30u64 {
            a.video_frame(i * 66_666_666, if i % 2 == 0 { &moved } else { &still });
        }
        // Second 0: silence; second 1: a loud tone.
        a.audio_samples(0, &vec![0u8; 96_000]);
        let tone: Vec<u8> = (0..48_000)
            .flat_map(|i| (((i as f64 / 10.0).sin() * 16_000.0) as i16).to_le_bytes())
            .collect();
        a.audio_samples(1_000_000_000, &tone);
        a.thumbnail(0, b"jpeg-0");
        a.thumbnail(1_000_000_000, b"jpeg-1");
        let (act, thumb) = a.side_for(0, 2_000_000);
        assert_eq!(act.first_s, 0);
        assert_eq!(act.motion.len(), 2);
        assert_eq!(act.motion[0], 0, "{act:?}");
        assert!(act.motion[1] > 50, "{act:?}");
        assert_eq!(act.audio[0], 0, "{act:?}");
        assert!(act.audio[1] > 80, "{act:?}");
        assert_eq!(thumb, b"jpeg-0");
        let (_, thumb) = a.side_for(1_000_000, 2_000_000);
        assert_eq!(thumb, b"jpeg-1");
    }
}
