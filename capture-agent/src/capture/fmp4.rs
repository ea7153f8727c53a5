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

use std::collections::VecDeque;

use anyhow::{bail, ensure, Context, Result};

use super::MediaFragment;

const SAMPLE_IS_NON_SYNC: u32 = 0x0001_0000;

const TFHD_BASE_DATA_OFFSET: u32 = 0x00_0001;
const TFHD_SAMPLE_DESCRIPTION_INDEX: u32 = 0x00_0002;
const TFHD_DEFAULT_DURATION: u32 = 0x00_0008;
const TFHD_DEFAULT_SIZE: u32 = 0x00_0010;
const TFHD_DEFAULT_FLAGS: u32 = 0x00_0020;
const TFHD_DEFAULT_BASE_IS_MOOF: u32 = 0x02_0000;

const TRUN_DATA_OFFSET: u32 = 0x000_001;
const TRUN_FIRST_SAMPLE_FLAGS: u32 = 0x000_004;
const TRUN_DURATION: u32 = 0x000_100;
const TRUN_SIZE: u32 = 0x000_200;
const TRUN_FLAGS: u32 = 0x000_400;
const TRUN_CTO: u32 = 0x000_800;

/// Most samples one `moof` may describe. A `trun` without per-sample fields
/// takes every value from the defaults, so its 32-bit sample count is bounded
/// by nothing in the box itself. mp4mux's chunks hold a few dozen samples.
const MAX_MOOF_SAMPLES: u64 = 1 << 16;

/// Largest top-level box accepted. mp4mux's boxes are a chunk of media each,
/// and the key-frame guard fails a capture whose GOP reaches 16 MiB
/// (`keyframes::MAX_GOP_BYTES`): a bigger declared size is corruption, which
/// would otherwise have the rest of the capture buffered waiting for the box.
const MAX_BOX_SIZE: u64 = 64 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handler {
    Video,
    Audio,
    Other,
}

#[derive(Debug, Clone)]
struct TrackInfo {
    id: u32,
    timescale: u32,
    handler: Handler,
    default_duration: Option<u32>,
    default_size: Option<u32>,
    default_flags: Option<u32>,
}

#[derive(Debug)]
struct Sample {
    decode_time: u64,
    duration: u32,
    flags: u32,
    cto: Option<i32>,
    data: Vec<u8>,
    pts_ns: u64,
    end_ns: u64,
}

impl Sample {
    fn is_sync(&self) -> bool {
        self.flags & SAMPLE_IS_NON_SYNC == 0
    }
}

#[derive(Debug)]
struct Track {
    info: TrackInfo,
    queue: VecDeque<Sample>,
    /// End of the last queued sample, used when a sample arrives without a timestamp.
    last_end_ns: Option<u64>,
}

/// Sample layout of one `traf`, before the sample bytes are known.
#[derive(Debug)]
struct TrafLayout {
    track_id: u32,
    base_data_offset: Option<u64>,
    default_base_is_moof: bool,
    base_decode_time: u64,
    runs: Vec<RunLayout>,
}

#[derive(Debug)]
struct RunLayout {
    data_offset: Option<i32>,
    samples: Vec<SampleLayout>,
}

#[derive(Debug, Clone, Copy)]
struct SampleLayout {
    duration: Option<u32>,
    size: Option<u32>,
    flags: Option<u32>,
    cto: Option<i32>,
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
                        decode_time,
                        duration,
                        flags,
                        cto: s.cto,
                        data,
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
                    u64::from(first.duration) / 2,
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

/// Size of the box starting at `data[0]`, or `None` if its header is incomplete.
fn box_size(data: &[u8]) -> Result<Option<u64>> {
    if data.len() < 8 {
        return Ok(None);
    }
    let size = u64::from(u32::from_be_bytes([data[0], data[1], data[2], data[3]]));
    match size {
        1 => {
            if data.len() < 16 {
                return Ok(None);
            }
            let large = u64::from_be_bytes(data[8..16].try_into().expect("slice of 8 bytes"));
            ensure!(large >= 16, "invalid 64-bit box size {large}");
            Ok(Some(large))
        }
        // mp4mux always sizes its boxes in streamable mode; an open-ended box
        // could never be delimited from the next one.
        0 => bail!("open-ended box (size 0) not supported"),
        s if s < 8 => bail!("invalid box size {s}"),
        s => Ok(Some(s)),
    }
}

/// Iterates the child boxes of a container payload as (type, payload).
fn children(payload: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    let mut rest = payload;
    std::iter::from_fn(move || {
        let size = usize::try_from(box_size(rest).ok()??).ok()?;
        if size > rest.len() {
            return None;
        }
        let header = if rest[0..4] == [0, 0, 0, 1] { 16 } else { 8 };
        let (this, tail) = rest.split_at(size);
        rest = tail;
        Some((&this[4..8], &this[header..]))
    })
}

/// Checks that `payload` is a sequence of whole boxes: `children` stops at the
/// first malformed one, which in a `moof` would silently drop samples.
fn ensure_whole_boxes(payload: &[u8]) -> Result<()> {
    let mut rest = payload;
    while !rest.is_empty() {
        let size = box_size(rest)?.context("truncated box header")?;
        ensure!(size <= rest.len() as u64, "box overruns its container");
        rest = &rest[size as usize..];
    }
    Ok(())
}

fn find_child<'a>(payload: &'a [u8], kind: &[u8; 4]) -> Option<&'a [u8]> {
    children(payload).find(|(k, _)| k == kind).map(|(_, p)| p)
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }

    fn bytes<const N: usize>(&mut self) -> Result<[u8; N]> {
        let slice = self
            .data
            .get(self.pos..self.pos + N)
            .context("truncated box")?;
        self.pos += N;
        Ok(slice.try_into().expect("slice has length N"))
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_be_bytes(self.bytes()?))
    }

    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_be_bytes(self.bytes()?))
    }

    fn skip(&mut self, n: usize) -> Result<()> {
        ensure!(self.pos + n <= self.data.len(), "truncated box");
        self.pos += n;
        Ok(())
    }

    /// Version and flags of a full box.
    fn full_header(&mut self) -> Result<(u8, u32)> {
        let v = self.u32()?;
        Ok(((v >> 24) as u8, v & 0x00ff_ffff))
    }
}

fn parse_moov(moov: &[u8]) -> Result<Vec<TrackInfo>> {
    let mut tracks = Vec::new();
    for (kind, trak) in children(moov) {
        if kind != b"trak" {
            continue;
        }
        let tkhd = find_child(trak, b"tkhd").context("trak without tkhd")?;
        let mut r = Reader::new(tkhd);
        let (version, _) = r.full_header()?;
        r.skip(if version == 1 { 16 } else { 8 })?;
        let id = r.u32()?;

        let mdia = find_child(trak, b"mdia").context("trak without mdia")?;
        let mdhd = find_child(mdia, b"mdhd").context("mdia without mdhd")?;
        let mut r = Reader::new(mdhd);
        let (version, _) = r.full_header()?;
        r.skip(if version == 1 { 16 } else { 8 })?;
        let timescale = r.u32()?;

        let hdlr = find_child(mdia, b"hdlr").context("mdia without hdlr")?;
        let mut r = Reader::new(hdlr);
        r.full_header()?;
        r.skip(4)?;
        let handler = match &r.bytes::<4>()? {
            b"vide" => Handler::Video,
            b"soun" => Handler::Audio,
            _ => Handler::Other,
        };
        tracks.push(TrackInfo {
            id,
            timescale,
            handler,
            default_duration: None,
            default_size: None,
            default_flags: None,
        });
    }
    if let Some(mvex) = find_child(moov, b"mvex") {
        for (kind, trex) in children(mvex) {
            if kind != b"trex" {
                continue;
            }
            let mut r = Reader::new(trex);
            r.full_header()?;
            let id = r.u32()?;
            r.skip(4)?;
            let (duration, size, flags) = (r.u32()?, r.u32()?, r.u32()?);
            if let Some(t) = tracks.iter_mut().find(|t| t.id == id) {
                t.default_duration = Some(duration);
                t.default_size = Some(size);
                t.default_flags = Some(flags);
            }
        }
    }
    Ok(tracks)
}

/// Parses a `moof`. Values that neither trun nor tfhd provide stay `None` and
/// are resolved against the track's `trex` defaults once the track is known.
fn parse_moof(moof: &[u8]) -> Result<Vec<TrafLayout>> {
    let mut trafs = Vec::new();
    let mut sample_count = 0u64;
    let header = if moof[0..4] == [0, 0, 0, 1] { 16 } else { 8 };
    let payload = &moof[header..];
    ensure_whole_boxes(payload)?;
    for (kind, traf) in children(payload) {
        if kind != b"traf" {
            continue;
        }
        ensure_whole_boxes(traf)?;
        let tfhd = find_child(traf, b"tfhd").context("traf without tfhd")?;
        let mut r = Reader::new(tfhd);
        let (_, flags) = r.full_header()?;
        let track_id = r.u32()?;
        let base_data_offset = if flags & TFHD_BASE_DATA_OFFSET != 0 {
            Some(r.u64()?)
        } else {
            None
        };
        if flags & TFHD_SAMPLE_DESCRIPTION_INDEX != 0 {
            let index = r.u32()?;
            ensure!(
                index <= 1,
                "multiple sample descriptions per track are not supported"
            );
        }
        let default_duration = if flags & TFHD_DEFAULT_DURATION != 0 {
            Some(r.u32()?)
        } else {
            None
        };
        let default_size = if flags & TFHD_DEFAULT_SIZE != 0 {
            Some(r.u32()?)
        } else {
            None
        };
        let default_flags = if flags & TFHD_DEFAULT_FLAGS != 0 {
            Some(r.u32()?)
        } else {
            None
        };

        let base_decode_time = match find_child(traf, b"tfdt") {
            Some(tfdt) => {
                let mut r = Reader::new(tfdt);
                let (version, _) = r.full_header()?;
                if version == 1 {
                    r.u64()?
                } else {
                    u64::from(r.u32()?)
                }
            }
            None => bail!("traf without tfdt"),
        };

        let mut runs = Vec::new();
        for (kind, trun) in children(traf) {
            if kind != b"trun" {
                continue;
            }
            let mut r = Reader::new(trun);
            let (version, flags) = r.full_header()?;
            let count = r.u32()?;
            sample_count += u64::from(count);
            ensure!(
                sample_count <= MAX_MOOF_SAMPLES,
                "moof describes too many samples ({sample_count})"
            );
            let data_offset = if flags & TRUN_DATA_OFFSET != 0 {
                Some(r.u32()? as i32)
            } else {
                None
            };
            let first_flags = if flags & TRUN_FIRST_SAMPLE_FLAGS != 0 {
                Some(r.u32()?)
            } else {
                None
            };
            let mut samples = Vec::with_capacity(count.min(4096) as usize);
            for i in 0..count {
                let duration = if flags & TRUN_DURATION != 0 {
                    Some(r.u32()?)
                } else {
                    default_duration
                };
                let size = if flags & TRUN_SIZE != 0 {
                    Some(r.u32()?)
                } else {
                    default_size
                };
                let sample_flags = if flags & TRUN_FLAGS != 0 {
                    Some(r.u32()?)
                } else if i == 0 && first_flags.is_some() {
                    first_flags
                } else {
                    default_flags
                };
                let cto = if flags & TRUN_CTO != 0 {
                    let raw = r.u32()?;
                    Some(if version == 0 {
                        i32::try_from(raw).unwrap_or(i32::MAX)
                    } else {
                        raw as i32
                    })
                } else {
                    None
                };
                samples.push(SampleLayout {
                    duration,
                    size,
                    flags: sample_flags,
                    cto,
                });
            }
            runs.push(RunLayout {
                data_offset,
                samples,
            });
        }
        trafs.push(TrafLayout {
            track_id,
            base_data_offset,
            default_base_is_moof: flags & TFHD_DEFAULT_BASE_IS_MOOF != 0,
            base_decode_time,
            runs,
        });
    }
    Ok(trafs)
}

fn write_box(out: &mut Vec<u8>, kind: &[u8; 4], body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(kind);
    body(out);
    let size = u32::try_from(out.len() - start).expect("fragment boxes stay far below 4 GiB");
    out[start..start + 4].copy_from_slice(&size.to_be_bytes());
}

fn write_moof(sequence: u32, tracks: &[(u32, Vec<Sample>)], data_offsets: &[i32]) -> Vec<u8> {
    let mut moof = Vec::new();
    write_box(&mut moof, b"moof", |m| {
        write_box(m, b"mfhd", |b| {
            b.extend_from_slice(&0u32.to_be_bytes());
            b.extend_from_slice(&sequence.to_be_bytes());
        });
        for ((track_id, samples), data_offset) in tracks.iter().zip(data_offsets) {
            write_box(m, b"traf", |t| {
                write_box(t, b"tfhd", |b| {
                    b.extend_from_slice(&TFHD_DEFAULT_BASE_IS_MOOF.to_be_bytes());
                    b.extend_from_slice(&track_id.to_be_bytes());
                });
                write_box(t, b"tfdt", |b| {
                    b.extend_from_slice(&0x0100_0000u32.to_be_bytes());
                    b.extend_from_slice(&samples[0].decode_time.to_be_bytes());
                });
                let has_cto = samples.iter().any(|s| s.cto.is_some());
                let negative_cto = samples.iter().any(|s| s.cto.is_some_and(|c| c < 0));
                let mut flags = TRUN_DATA_OFFSET | TRUN_DURATION | TRUN_SIZE | TRUN_FLAGS;
                if has_cto {
                    flags |= TRUN_CTO;
                }
                let version: u32 = if negative_cto { 1 } else { 0 };
                write_box(t, b"trun", |b| {
                    b.extend_from_slice(&((version << 24) | flags).to_be_bytes());
                    b.extend_from_slice(&(samples.len() as u32).to_be_bytes());
                    b.extend_from_slice(&data_offset.to_be_bytes());
                    for s in samples {
                        b.extend_from_slice(&s.duration.to_be_bytes());
                        b.extend_from_slice(&(s.data.len() as u32).to_be_bytes());
                        b.extend_from_slice(&s.flags.to_be_bytes());
                        if has_cto {
                            b.extend_from_slice(&s.cto.unwrap_or(0).to_be_bytes());
                        }
                    }
                });
            });
        }
    });
    moof
}

fn build_fragment(sequence: u32, tracks: &[(u32, Vec<Sample>)]) -> Vec<u8> {
    // The moof's size does not depend on the offset values, so lay it out once
    // with placeholders to learn where the mdat payload will start.
    let placeholder = vec![0; tracks.len()];
    let moof_len = write_moof(sequence, tracks, &placeholder).len();
    let mut offsets = Vec::with_capacity(tracks.len());
    let mut at = moof_len + 8;
    for (_, samples) in tracks {
        offsets.push(i32::try_from(at).expect("fragment smaller than 2 GiB"));
        at += samples.iter().map(|s| s.data.len()).sum::<usize>();
    }
    let mut out = write_moof(sequence, tracks, &offsets);
    write_box(&mut out, b"mdat", |m| {
        for (_, samples) in tracks {
            for s in samples {
                m.extend_from_slice(&s.data);
            }
        }
    });
    out
}

/// Test helper: `(track_id, first sample is sync)` for each traf of a fragment's moof.
#[cfg(test)]
pub(super) fn first_sample_sync(fragment: &[u8]) -> Result<Vec<(u32, bool)>> {
    ensure!(
        fragment.len() >= 8 && &fragment[4..8] == b"moof",
        "fragment does not start with moof"
    );
    let size = box_size(fragment)?.context("truncated moof")? as usize;
    let trafs = parse_moof(&fragment[..size])?;
    Ok(trafs
        .iter()
        .map(|t| {
            let sync = t
                .runs
                .first()
                .and_then(|r| r.samples.first())
                .is_some_and(|s| s.flags.unwrap_or(0) & SAMPLE_IS_NON_SYNC == 0);
            (t.track_id, sync)
        })
        .collect())
}

#[cfg(test)]
mod tests;
