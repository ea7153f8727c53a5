//! Regroups mp4mux's fragmented output into self-contained media fragments.
//!
//! mp4mux (GStreamer 1.22) fragments each track on its own: every `moof` holds a
//! single `traf`, video is flushed at each key frame and audio whenever its own
//! duration budget runs out. Audio chunks are a whole number of AAC frames
//! (1024 samples), so at 48 kHz they never line up with video GOPs and drift
//! further apart over a recording. Cutting the byte stream at every `moof` would
//! therefore give fragments that are single-track and overlap in time.
//!
//! Instead, the samples of every track are collected from mp4mux's small chunks
//! and re-emitted as one `moof` (one `traf` per track) + one `mdat` per
//! fragment. Fragments start on a key frame of the reference track (video when
//! present) and every other track contributes the samples that start before the
//! next fragment's boundary, so media ranges are contiguous.
//!
//! This file is the policy only; the boxes are read and written in `fmp4/boxes.rs`.

use std::collections::VecDeque;

use anyhow::{ensure, Context, Result};

#[cfg(test)]
pub(super) use self::boxes::first_sample_sync;
#[cfg(test)]
use self::boxes::SAMPLE_IS_NON_SYNC;
use self::boxes::{
    box_size, build_fragment, find_child, parse_moof, parse_moov, Coded, Handler, TrackInfo,
    TrafLayout, MAX_BOX_SIZE,
};
use super::MediaFragment;

mod boxes;

/// A sample waiting to be regrouped: its coded form, and when it plays.
#[derive(Debug)]
struct Sample {
    coded: Coded,
    pts_ns: u64,
    end_ns: u64,
}

impl Sample {
    fn is_sync(&self) -> bool {
        self.coded.is_sync()
    }
}

impl std::borrow::Borrow<Coded> for Sample {
    fn borrow(&self) -> &Coded {
        &self.coded
    }
}

#[derive(Debug)]
struct Track {
    info: TrackInfo,
    queue: VecDeque<Sample>,
    /// End of the last queued sample, used when a sample arrives without a timestamp.
    last_end_ns: Option<u64>,
}

/// A timestamp carried by an appsink buffer, keyed by the stream offset of its first byte.
#[derive(Debug, Clone, Copy)]
struct Stamp {
    offset: u64,
    pts_ns: u64,
    duration_ns: Option<u64>,
}

pub(super) struct Remuxer {
    fragment_ns: u64,
    /// Bytes received but not yet consumed as complete top-level boxes.
    pending: Vec<u8>,
    /// Stream offset of `pending[0]`.
    pending_offset: u64,
    stamps: VecDeque<Stamp>,
    init_bytes: Vec<u8>,
    init_sent: bool,
    tracks: Vec<Track>,
    reference: usize,
    /// mp4mux's `moof` waiting for its `mdat`: stream offset and parsed layout.
    moof: Option<(u64, Vec<TrafLayout>)>,
    origin_ns: Option<u64>,
    sequence: u32,
}

impl Remuxer {
    pub(super) fn new(fragment_ms: u32) -> Self {
        Self {
            fragment_ns: u64::from(fragment_ms) * 1_000_000,
            pending: Vec::new(),
            pending_offset: 0,
            stamps: VecDeque::new(),
            init_bytes: Vec::new(),
            init_sent: false,
            tracks: Vec::new(),
            reference: 0,
            moof: None,
            origin_ns: None,
            sequence: 0,
        }
    }

    /// Feeds one appsink buffer; returns the fragments it completed, in order.
    pub(super) fn push(
        &mut self,
        data: &[u8],
        pts_ns: Option<u64>,
        duration_ns: Option<u64>,
    ) -> Result<Vec<MediaFragment>> {
        let offset = self.pending_offset + self.pending.len() as u64;
        if let Some(pts_ns) = pts_ns {
            self.stamps.push_back(Stamp {
                offset,
                pts_ns,
                duration_ns,
            });
        }
        self.pending.extend_from_slice(data);

        let mut out = Vec::new();
        while let Some((box_offset, bytes)) = self.take_box()? {
            self.handle_box(box_offset, bytes, &mut out)?;
        }
        self.emit_ready(false, &mut out);
        Ok(out)
    }

    /// Flushes everything still queued at end of stream.
    pub(super) fn finish(&mut self) -> Result<Vec<MediaFragment>> {
        let mut out = Vec::new();
        if !self.init_sent && !self.init_bytes.is_empty() {
            self.send_init(&mut out)?;
        }
        if !self.pending.is_empty() {
            tracing::warn!(
                bytes = self.pending.len(),
                "incomplete box at end of stream dropped"
            );
            self.pending.clear();
        }
        self.emit_ready(true, &mut out);
        Ok(out)
    }

    fn take_box(&mut self) -> Result<Option<(u64, Vec<u8>)>> {
        let Some(size) = box_size(&self.pending)? else {
            return Ok(None);
        };
        ensure!(size <= MAX_BOX_SIZE, "box too large: {size} bytes");
        let size = usize::try_from(size).context("box too large")?;
        if self.pending.len() < size {
            return Ok(None);
        }
        let rest = self.pending.split_off(size);
        let bytes = std::mem::replace(&mut self.pending, rest);
        let offset = self.pending_offset;
        self.pending_offset += size as u64;
        Ok(Some((offset, bytes)))
    }

    fn handle_box(
        &mut self,
        offset: u64,
        bytes: Vec<u8>,
        out: &mut Vec<MediaFragment>,
    ) -> Result<()> {
        let kind = &bytes[4..8];
        if !self.init_sent {
            if kind != b"moof" {
                self.init_bytes.extend_from_slice(&bytes);
                return Ok(());
            }
            self.send_init(out)?;
        }
        match kind {
            b"moof" => {
                if self.moof.is_some() {
                    tracing::warn!("moof without mdat dropped");
                }
                self.moof = Some((offset, parse_moof(&bytes)?));
            }
            b"mdat" => {
                let (moof_offset, trafs) =
                    self.moof.take().context("mdat without preceding moof")?;
                self.add_samples(moof_offset, trafs, offset, &bytes)?;
            }
            // The trailing mfra indexes mp4mux's byte offsets, which no longer exist
            // once the samples are regrouped.
            other => {
                tracing::debug!(kind = %String::from_utf8_lossy(other), "top-level box skipped")
            }
        }
        Ok(())
    }

    fn send_init(&mut self, out: &mut Vec<MediaFragment>) -> Result<()> {
        let moov = find_child(&self.init_bytes, b"moov").context("init segment has no moov")?;
        let infos = parse_moov(moov)?;
        ensure!(!infos.is_empty(), "init segment declares no tracks");
        self.reference = infos
            .iter()
            .position(|t| t.handler == Handler::Video)
            .unwrap_or(0);
        tracing::debug!(tracks = ?infos, "init segment parsed");
        self.tracks = infos
            .into_iter()
            .map(|info| Track {
                info,
                queue: VecDeque::new(),
                last_end_ns: None,
            })
            .collect();
        out.push(MediaFragment {
            data: std::mem::take(&mut self.init_bytes).into(),
            media_start_us: 0,
            media_end_us: 0,
            is_init: true,
            side: None,
        });
        self.init_sent = true;
        Ok(())
    }

    fn add_samples(
        &mut self,
        moof_offset: u64,
        trafs: Vec<TrafLayout>,
        mdat_offset: u64,
        mdat: &[u8],
    ) -> Result<()> {
        let header = if u32::from_be_bytes([mdat[0], mdat[1], mdat[2], mdat[3]]) == 1 {
            16
        } else {
            8
        };
        let payload_start = mdat_offset + header;
        let mdat_end = mdat_offset + mdat.len() as u64;
        // Per ISO/IEC 14496-12, without explicit offsets the data follows the previous run.
        let mut cursor = payload_start;
        for (i, traf) in trafs.into_iter().enumerate() {
            let track_index = self
                .tracks
                .iter()
                .position(|t| t.info.id == traf.track_id)
                .with_context(|| format!("traf for unknown track {}", traf.track_id))?;
            let base = match traf.base_data_offset {
                Some(b) => b,
                None if traf.default_base_is_moof || i == 0 => moof_offset,
                None => cursor,
            };
            let mut decode_time = traf.base_decode_time;
            for run in traf.runs {
                if let Some(off) = run.data_offset {
                    cursor = base
                        .checked_add_signed(i64::from(off))
                        .context("negative data offset")?;
                }
                for s in run.samples {
                    let info = &self.tracks[track_index].info;
                    let size = s
                        .size
                        .or(info.default_size)
                        .context("sample size missing")?;
                    let duration = s
                        .duration
                        .or(info.default_duration)
                        .context("sample duration missing")?;
                    let flags = s.flags.or(info.default_flags).unwrap_or(0);
                    let start = cursor;
                    let end = start.saturating_add(u64::from(size));
                    ensure!(
                        start >= payload_start && end <= mdat_end,
                        "sample data outside its mdat"
                    );
                    let data =
                        mdat[(start - mdat_offset) as usize..(end - mdat_offset) as usize].to_vec();
                    let stamp = self.stamp_at(start);
                    let track = &mut self.tracks[track_index];
                    let scaled_ns = scale_to_ns(u64::from(duration), track.info.timescale);
                    let pts_ns = stamp
                        .map(|st| st.pts_ns)
                        .or(track.last_end_ns)
                        .unwrap_or_else(|| scale_to_ns(decode_time, track.info.timescale));
                    let end_ns = pts_ns
                        .saturating_add(stamp.and_then(|st| st.duration_ns).unwrap_or(scaled_ns));
                    track.last_end_ns = Some(end_ns);
                    track.queue.push_back(Sample {
                        coded: Coded {
                            decode_time,
                            duration,
                            flags,
                            cto: s.cto,
                            data,
                        },
                        pts_ns,
                        end_ns,
                    });
                    decode_time = decode_time
                        .checked_add(u64::from(duration))
                        .context("decode time overflows 64 bits")?;
                    cursor = end;
                }
            }
        }
        self.stamps.retain(|st| st.offset >= mdat_end);
        Ok(())
    }

    fn stamp_at(&mut self, offset: u64) -> Option<Stamp> {
        while self.stamps.front().is_some_and(|st| st.offset < offset) {
            self.stamps.pop_front();
        }
        self.stamps
            .front()
            .filter(|st| st.offset == offset)
            .copied()
    }

    fn emit_ready(&mut self, eos: bool, out: &mut Vec<MediaFragment>) {
        if !self.init_sent {
            return;
        }
        loop {
            let reference = &self.tracks[self.reference].queue;
            let Some(first) = reference.front() else {
                if eos {
                    self.emit_group(None, out);
                }
                return;
            };
            // Half a sample of slack so that a key frame landing a hair early
            // (timestamp rounding) still closes the fragment on schedule.
            let due = first
                .pts_ns
                .saturating_add(self.fragment_ns.saturating_sub(scale_to_ns(
                    u64::from(first.coded.duration) / 2,
                    self.tracks[self.reference].info.timescale,
                )));
            // Strictly after `first`, or the group would be empty and never drain.
            let boundary = reference
                .iter()
                .skip(1)
                .find(|s| s.is_sync() && s.pts_ns >= due && s.pts_ns > first.pts_ns)
                .map(|s| s.pts_ns);
            let Some(boundary) = boundary else {
                if eos {
                    self.emit_group(None, out);
                }
                return;
            };
            let newest_reference = reference.back().map_or(boundary, |s| s.pts_ns);
            // A track that lags a whole fragment behind is treated as stalled
            // (e.g. a microphone that stopped) rather than holding video back forever.
            let others_caught_up = self.tracks.iter().enumerate().all(|(i, t)| {
                i == self.reference
                    || t.queue.back().is_some_and(|s| s.pts_ns >= boundary)
                    || newest_reference >= boundary.saturating_add(self.fragment_ns)
            });
            if !(eos || others_caught_up) {
                return;
            }
            self.emit_group(Some(boundary), out);
        }
    }

    /// Emits the samples that start before `boundary` (all of them if `None`).
    fn emit_group(&mut self, boundary: Option<u64>, out: &mut Vec<MediaFragment>) {
        let mut per_track: Vec<(u32, Vec<Sample>)> = Vec::new();
        for track in &mut self.tracks {
            let count = match boundary {
                Some(b) => track.queue.iter().take_while(|s| s.pts_ns < b).count(),
                None => track.queue.len(),
            };
            if count > 0 {
                per_track.push((track.info.id, track.queue.drain(..count).collect()));
            }
        }
        if per_track.is_empty() {
            return;
        }
        // The reference track goes first so each fragment's data opens on its key frame.
        let reference_id = self.tracks[self.reference].info.id;
        per_track.sort_by_key(|(id, _)| *id != reference_id);

        let start = per_track
            .iter()
            .flat_map(|(_, s)| s.iter().map(|s| s.pts_ns))
            .min();
        let end = per_track
            .iter()
            .flat_map(|(_, s)| s.iter().map(|s| s.end_ns))
            .max();
        let (Some(start), Some(end)) = (start, end) else {
            return;
        };
        let origin = *self.origin_ns.get_or_insert(start);
        self.sequence += 1;
        out.push(MediaFragment {
            data: build_fragment(self.sequence, &per_track).into(),
            media_start_us: start.saturating_sub(origin) / 1000,
            media_end_us: end.saturating_sub(origin) / 1000,
            is_init: false,
            side: None,
        });
    }
}

fn scale_to_ns(value: u64, timescale: u32) -> u64 {
    if timescale == 0 {
        return 0;
    }
    u64::try_from(u128::from(value) * 1_000_000_000 / u128::from(timescale)).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
