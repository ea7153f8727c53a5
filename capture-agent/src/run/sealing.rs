//! Sealing, on a thread of its own: each fragment sealed the moment it is complete and
//! spooled before it is queued for upload; a new stream when the server lost the live one
//! (the uploader says so on the `lost` channel) or when a lost device came back.

use super::streams::{LiveStream, Streams};
use crate::capture::CaptureEvent;
use crate::recorder::Recorder;
use crate::refusal::DropReason;
use crate::report::{Event, Report};
use crate::spool::Spool;
use crate::uploader::{Job, Progress, Queue};
use protocol::Fragment;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::time::Instant;
use uuid::Uuid;

/// Where sealing keys streams, keeps chunks and counts losses, and whom it tells.
#[derive(Clone, Copy)]
pub(super) struct Sealer<'a> {
    pub streams: &'a Streams,
    /// Streams the server cannot open (from the uploader).
    pub lost: &'a Receiver<Uuid>,
    pub spool: &'a Spool,
    pub max_chunk: u64,
    pub progress: &'a Progress,
    pub report: &'a dyn Report,
}

/// Seals every capture of the recording: the first, then, each time a device is lost and
/// comes back, the next one into a new stream. The gap between them is on record (the
/// stream before ends abruptly); recording resumes by itself.
/// After a withdrawal (`withdrawing` set), nothing sealed is queued any more.
pub(super) fn seal_all(
    events: Receiver<CaptureEvent>,
    first: LiveStream,
    s: Sealer<'_>,
    queue: &Queue,
    recorder: &Recorder,
    withdrawing: &AtomicBool,
) -> anyhow::Result<Sealed> {
    let send = |job| {
        if !withdrawing.load(Ordering::SeqCst) {
            queue.send(job)
        }
    };
    let (mut events, mut stream) = (events, first);
    let mut total = Sealed {
        fragments: 0,
        streams: 0,
        media_us: 0,
        capture_error: None,
    };
    loop {
        let sealed = seal_loop(events, stream, s, send)?;
        total.add(&sealed);
        let Some(error) = sealed.capture_error else {
            return Ok(total);
        };
        if recorder.stopping() {
            total.capture_error = Some(error);
            return Ok(total);
        }
        tracing::warn!(%error, "capture failed; waiting for the devices");
        s.report.report(&Event::DeviceLost);
        match recorder.resume() {
            Some(resumed) => {
                s.report.report(&Event::DeviceBack);
                events = resumed;
                stream = s.streams.open();
            }
            None => {
                s.report.report(&Event::DeviceWaitOver);
                total.capture_error = (!recorder.stopping()).then_some(error);
                return Ok(total);
            }
        }
    }
}

pub(super) struct Sealed {
    pub fragments: u32,
    pub streams: u32,
    pub media_us: u64,
    pub capture_error: Option<String>,
}

impl Sealed {
    /// Counts another capture's streams (after a device came back).
    fn add(&mut self, other: &Sealed) {
        self.fragments += other.fragments;
        self.streams += other.streams;
        self.media_us += other.media_us;
    }
}

/// Seals each fragment the moment it is complete, so a crash loses only the fragment still
/// being encoded. A clean end is marked by an empty final chunk: the last media fragment is
/// not known to be the last until the pipeline says so, and holding it back would put it
/// at risk. When the live stream is lost (the server cannot open it), the next fragment
/// goes into a new stream, keyed here at once; the initialisation segment opens it and
/// media times restart at its first fragment, as a stream's header times count from its own
/// start.
fn seal_loop(
    events: Receiver<CaptureEvent>,
    mut stream: LiveStream,
    sealer: Sealer<'_>,
    send: impl Fn(Job),
) -> anyhow::Result<Sealed> {
    let Sealer {
        streams,
        lost,
        spool,
        max_chunk,
        progress,
        report,
    } = sealer;
    let mut media_end = 0u64;
    let mut fragments = 0u32;
    let mut opened = 1u32;
    let mut init: Option<zeroize::Zeroizing<Vec<u8>>> = None;
    // Media time of the current stream's first fragment: header times count from there.
    let mut origin_us: Option<u64> = Some(0);
    let mut warned_disk = false;
    let mut seal = |s: &mut LiveStream,
                    data: &[u8],
                    start_us: u64,
                    end_us: u64,
                    last: bool|
     -> anyhow::Result<()> {
        let (index, chunk) = s.sealer.seal(Fragment {
            data,
            media_start_us: start_us,
            media_end_us: end_us,
            last,
        })?;
        if chunk.len() as u64 > max_chunk {
            tracing::warn!(
                index,
                size = chunk.len(),
                "fragment larger than the server accepts"
            );
        }
        // A spool write that fails (disk full) never stops the recording: the chunk waits
        // in memory, within a bound, and the candidate is told.
        let spooled = match spool.put(s.id, index, &chunk) {
            Ok(c) => c,
            Err(e) => {
                if !warned_disk {
                    report.report(&Event::SpoolFull);
                    warned_disk = true;
                }
                tracing::warn!(index, error = %e, "spool write failed; chunk held in memory");
                if progress.held_bytes.load(Ordering::SeqCst) + chunk.len() as u64
                    > crate::spool::MAX_HELD_BYTES
                {
                    tracing::error!(index, "memory bound reached: fragment lost");
                    progress.record_loss(DropReason::SpoolFull);
                    fragments += 1;
                    return Ok(());
                }
                spool.held(s.id, index, chunk)
            }
        };
        if last {
            if let Err(e) = spool.mark_final(s.id, index) {
                tracing::warn!(error = %e, "could not note the stream's end in the spool");
            }
        }
        send(Job::Chunk(spooled, Instant::now()));
        if last {
            send(Job::End {
                stream: s.id,
                final_index: index,
            });
        }
        fragments += 1;
        Ok(())
    };
    for ev in events.iter() {
        if lost.try_iter().any(|id| id == stream.id) {
            report.report(&Event::StreamReopened);
            stream = streams.open();
            opened += 1;
            origin_us = None;
            if let Some(i) = &init {
                seal(&mut stream, i, 0, 0, false)?;
            }
        }
        match ev {
            CaptureEvent::Fragment(f) => {
                media_end = media_end.max(f.media_end_us);
                if f.is_init {
                    seal(&mut stream, &f.data, 0, 0, false)?;
                    init = Some(f.data);
                    continue;
                }
                let origin = *origin_us.get_or_insert(f.media_start_us);
                // The activity and thumbnail travel sealed with the media (payload v2).
                let payload = f.side.as_ref().map(|(activity, thumb)| {
                    zeroize::Zeroizing::new(protocol::encode_payload(&f.data, activity, thumb))
                });
                let plaintext: &[u8] = payload.as_deref().map_or(&f.data, |p| p.as_slice());
                seal(
                    &mut stream,
                    plaintext,
                    f.media_start_us.saturating_sub(origin),
                    f.media_end_us.saturating_sub(origin),
                    false,
                )?;
                // `f.data` and the payload, the plaintext, are wiped here; only ciphertext was written.
            }
            CaptureEvent::Finished => {
                let end = media_end.saturating_sub(origin_us.unwrap_or(0));
                seal(&mut stream, &[], end, end, true)?;
                return Ok(Sealed {
                    fragments,
                    streams: opened,
                    media_us: media_end,
                    capture_error: None,
                });
            }
            // The stream stays without a final chunk: the reviewer sees "ended abruptly".
            CaptureEvent::Error(e) => {
                return Ok(Sealed {
                    fragments,
                    streams: opened,
                    media_us: media_end,
                    capture_error: Some(e),
                })
            }
        }
    }
    Ok(Sealed {
        fragments,
        streams: opened,
        media_us: media_end,
        capture_error: Some("capture stopped without finishing".into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::MediaFragment;
    use std::sync::Mutex;
    use std::time::Duration;

    fn fragment(start_s: u64, is_init: bool) -> CaptureEvent {
        let (media_start_us, media_end_us) = if is_init {
            (0, 0)
        } else {
            (start_s * 1_000_000, (start_s + 2) * 1_000_000)
        };
        CaptureEvent::Fragment(MediaFragment {
            data: vec![start_s as u8; 64].into(),
            media_start_us,
            media_end_us,
            is_init,
            side: None,
        })
    }

    fn streams() -> Streams {
        let attempt = Uuid::new_v4();
        Streams {
            attempt,
            public: protocol::AttemptKey::generate().recipient(&attempt).1,
        }
    }

    /// Defect found in review: after a reopen an hour into the exam, fragments kept their
    /// capture-relative media times, which the new stream's age window refused for good.
    #[test]
    fn a_reopened_stream_starts_with_the_init_segment_and_its_own_media_time() {
        let root = tempfile::tempdir().unwrap();
        let spool = Spool::open(root.path(), Uuid::new_v4(), "clt_t").unwrap();
        let (events_tx, events) = std::sync::mpsc::channel();
        let (lost_tx, lost) = std::sync::mpsc::channel();
        let streams = streams();
        let first = streams.open();
        let first_id = first.id;
        events_tx.send(fragment(0, true)).unwrap();
        events_tx.send(fragment(3600, false)).unwrap();
        let looping = {
            let spool = spool.clone();
            std::thread::spawn(move || {
                seal_loop(
                    events,
                    first,
                    Sealer {
                        streams: &streams,
                        lost: &lost,
                        spool: &spool,
                        max_chunk: u64::MAX,
                        progress: &Default::default(),
                        report: &crate::report::Silent,
                    },
                    |_| {},
                )
            })
        };
        // An hour into the exam the server cannot open the live stream: a new one is keyed.
        let deadline = Instant::now() + Duration::from_secs(10);
        while spool.pending().unwrap().len() < 2 {
            assert!(
                Instant::now() < deadline,
                "the first two fragments were not sealed"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        lost_tx.send(Uuid::new_v4()).unwrap(); // another stream's loss changes nothing
        lost_tx.send(first_id).unwrap();
        events_tx.send(fragment(3602, false)).unwrap();
        events_tx.send(fragment(3604, false)).unwrap();
        events_tx.send(CaptureEvent::Finished).unwrap();
        let sealed = looping.join().unwrap().unwrap();
        assert_eq!(sealed.streams, 2);
        let headers: Vec<(Uuid, protocol::ChunkHeader)> = spool
            .pending()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c.stream,
                    protocol::ChunkHeader::parse(&std::fs::read(&c.path).unwrap())
                        .unwrap()
                        .0,
                )
            })
            .collect();
        let second_headers: Vec<_> = headers
            .iter()
            .filter(|(s, _)| *s != first_id)
            .map(|(_, h)| h)
            .collect();
        // Index 0 is the init segment again, carrying the new stream's opening; media time
        // restarts at the stream's first fragment.
        assert_eq!(
            second_headers
                .iter()
                .map(|h| (
                    h.index,
                    h.media_start_us,
                    h.media_end_us,
                    h.opening.is_some()
                ))
                .collect::<Vec<_>>(),
            vec![
                (0, 0, 0, true),
                (1, 0, 2_000_000, false),
                (2, 2_000_000, 4_000_000, false),
                (3, 4_000_000, 4_000_000, false)
            ]
        );
        assert!(second_headers.last().unwrap().last);
        // The first stream kept what it had: init, and the fragment at an hour (its own time 0).
        let first_headers: Vec<_> = headers
            .iter()
            .filter(|(s, _)| *s == first_id)
            .map(|(_, h)| (h.index, h.media_start_us))
            .collect();
        assert_eq!(first_headers, vec![(0, 0), (1, 3_600_000_000)]);
    }

    /// Disk full: a spool write that fails never stops the recording; the chunk waits in
    /// memory within the bound, and past the bound the loss is counted, not hidden.
    #[test]
    fn a_failing_spool_write_holds_the_chunk_in_memory_within_a_bound() {
        let root = tempfile::tempdir().unwrap();
        let spool = Spool::open(root.path(), Uuid::new_v4(), "clt_t").unwrap();
        let streams = streams();
        let first = streams.open();
        // The stream's directory cannot be created: every write fails, as on a full disk.
        std::fs::write(spool.dir().join(first.id.to_string()), b"in the way").unwrap();
        let (events_tx, events) = std::sync::mpsc::channel();
        let (_lost_tx, lost) = std::sync::mpsc::channel();
        for e in [
            fragment(0, true),
            fragment(0, false),
            fragment(2, false),
            CaptureEvent::Finished,
        ] {
            events_tx.send(e).unwrap();
        }
        let progress = crate::uploader::Progress::default();
        let jobs = Mutex::new(Vec::new());
        let sealed = seal_loop(
            events,
            first,
            Sealer {
                streams: &streams,
                lost: &lost,
                spool: &spool,
                max_chunk: u64::MAX,
                progress: &progress,
                report: &crate::report::Silent,
            },
            |j| jobs.lock().unwrap().push(j),
        )
        .unwrap();
        assert_eq!(sealed.fragments, 4);
        let held: Vec<_> = jobs
            .lock()
            .unwrap()
            .iter()
            .filter_map(|j| {
                if let Job::Chunk(c, _) = j {
                    Some(c.held.is_some())
                } else {
                    None
                }
            })
            .collect();
        assert_eq!(held, vec![true; 4], "every chunk held in memory");
        assert!(spool.pending().unwrap().is_empty());

        // At the bound, the next fragment is lost and counted.
        let (events_tx, events) = std::sync::mpsc::channel();
        let (_lost_tx, lost) = std::sync::mpsc::channel();
        let blocked = streams.open();
        std::fs::write(spool.dir().join(blocked.id.to_string()), b"in the way").unwrap();
        events_tx.send(fragment(0, true)).unwrap();
        events_tx.send(CaptureEvent::Finished).unwrap();
        let full = crate::uploader::Progress::default();
        full.held_bytes
            .store(crate::spool::MAX_HELD_BYTES, Ordering::SeqCst);
        seal_loop(
            events,
            blocked,
            Sealer {
                streams: &streams,
                lost: &lost,
                spool: &spool,
                max_chunk: u64::MAX,
                progress: &full,
                report: &crate::report::Silent,
            },
            |_| {},
        )
        .unwrap();
        assert_eq!(full.dropped.load(Ordering::SeqCst), 2);
        assert_eq!(
            full.drop_reasons
                .lock()
                .unwrap()
                .get(&DropReason::SpoolFull),
            Some(&2)
        );
    }
}
