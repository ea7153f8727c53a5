//! The ISO-BMFF boxes the regrouper reads and writes, and nothing of its policy: the
//! top-level box framing, `moov` (track id, timescale, handler, `trex` defaults) and `moof`
//! (`tfhd`, `tfdt`, `trun`) read into layouts, and one multi-track `moof` + `mdat` written.
//!
//! Hand-written rather than `mp4-atom` (0.17.0, tried for issue 21 and measured):
//! - its decoder reads every field of a box and every required child: a `tkhd` that ends
//!   after the fields read here fails (`OverDecode`), a `trak` without `minf` fails
//!   (`MissingBox(minf)`); the regrouper needs only the track id, timescale, handler and
//!   `trex` defaults, and its tests (`fmp4/tests.rs`, kept as they are) feed exactly such
//!   minimal init segments;
//! - its encoder picks the `trun` layout itself: always version 1 (this writer uses 0
//!   unless an offset is negative), and a one-sample run with first-sample flags (`trun`
//!   flags 0x305) instead of per-sample flags (0x701), which the tests' layout check
//!   rejects and which would change the bytes every fragment has carried so far.
//!
//! Decoding leaf boxes one by one with it would keep the container walk and the bounds
//! here and still fail on the first point, so the format stays here, apart from the policy.

use anyhow::{bail, ensure, Context, Result};

use std::borrow::Borrow;

pub(super) const SAMPLE_IS_NON_SYNC: u32 = 0x0001_0000;

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
pub(super) const MAX_BOX_SIZE: u64 = 64 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Handler {
    Video,
    Audio,
    Other,
}

#[derive(Debug, Clone)]
pub(super) struct TrackInfo {
    pub id: u32,
    pub timescale: u32,
    pub handler: Handler,
    pub default_duration: Option<u32>,
    pub default_size: Option<u32>,
    pub default_flags: Option<u32>,
}

/// A sample as a `trun` describes it and the `mdat` carries it.
#[derive(Debug)]
pub(super) struct Coded {
    pub decode_time: u64,
    pub duration: u32,
    pub flags: u32,
    pub cto: Option<i32>,
    pub data: Vec<u8>,
}

impl Coded {
    pub fn is_sync(&self) -> bool {
        self.flags & SAMPLE_IS_NON_SYNC == 0
    }
}

/// Sample layout of one `traf`, before the sample bytes are known.
#[derive(Debug)]
pub(super) struct TrafLayout {
    pub track_id: u32,
    pub base_data_offset: Option<u64>,
    pub default_base_is_moof: bool,
    pub base_decode_time: u64,
    pub runs: Vec<RunLayout>,
}

#[derive(Debug)]
pub(super) struct RunLayout {
    pub data_offset: Option<i32>,
    pub samples: Vec<SampleLayout>,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct SampleLayout {
    pub duration: Option<u32>,
    pub size: Option<u32>,
    pub flags: Option<u32>,
    pub cto: Option<i32>,
}

/// Size of the box starting at `data[0]`, or `None` if its header is incomplete.
pub(super) fn box_size(data: &[u8]) -> Result<Option<u64>> {
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

pub(super) fn find_child<'a>(payload: &'a [u8], kind: &[u8; 4]) -> Option<&'a [u8]> {
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

pub(super) fn parse_moov(moov: &[u8]) -> Result<Vec<TrackInfo>> {
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
pub(super) fn parse_moof(moof: &[u8]) -> Result<Vec<TrafLayout>> {
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

fn write_moof<S: Borrow<Coded>>(
    sequence: u32,
    tracks: &[(u32, Vec<S>)],
    data_offsets: &[i32],
) -> Vec<u8> {
    let mut moof = Vec::new();
    write_box(&mut moof, b"moof", |m| {
        write_box(m, b"mfhd", |b| {
            b.extend_from_slice(&0u32.to_be_bytes());
            b.extend_from_slice(&sequence.to_be_bytes());
        });
        for ((track_id, samples), data_offset) in tracks.iter().zip(data_offsets) {
            let samples: Vec<&Coded> = samples.iter().map(Borrow::borrow).collect();
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
                    for s in &samples {
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

/// One `moof` (a `traf` per track, in the order given) and its `mdat`.
pub(super) fn build_fragment<S: Borrow<Coded>>(sequence: u32, tracks: &[(u32, Vec<S>)]) -> Vec<u8> {
    // The moof's size does not depend on the offset values, so lay it out once
    // with placeholders to learn where the mdat payload will start.
    let placeholder = vec![0; tracks.len()];
    let moof_len = write_moof(sequence, tracks, &placeholder).len();
    let mut offsets = Vec::with_capacity(tracks.len());
    let mut at = moof_len + 8;
    for (_, samples) in tracks {
        offsets.push(i32::try_from(at).expect("fragment smaller than 2 GiB"));
        at += samples.iter().map(|s| s.borrow().data.len()).sum::<usize>();
    }
    let mut out = write_moof(sequence, tracks, &offsets);
    write_box(&mut out, b"mdat", |m| {
        for (_, samples) in tracks {
            for s in samples {
                m.extend_from_slice(&s.borrow().data);
            }
        }
    });
    out
}

/// Test helper: `(track_id, first sample is sync)` for each traf of a fragment's moof.
#[cfg(test)]
pub(crate) fn first_sample_sync(fragment: &[u8]) -> Result<Vec<(u32, bool)>> {
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
