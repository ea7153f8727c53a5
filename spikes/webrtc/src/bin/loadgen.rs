//! Load generator: N str0m client peers (the offerer; full ICE; one UDP socket and one
//! thread per peer, as the capture agent would have), each sending chunks framed into
//! <= 64 KiB messages, paced on the channel's send buffer, and timing the server's acks.
//! The same client is used against both servers.
//!
//! Bulk:  loadgen --server 127.0.0.1:8001 --peers 1 --chunks 300 --interval-ms 0
//! Load:  loadgen --server 127.0.0.1:8001 --peers 200 --duration-s 60 --interval-ms 2000
//!
//! Options: --chunk-size 150000, --send-buffer <bytes> (str0m sctp max buffered amount,
//! default 128 KiB), --high-water <bytes> (stop writing above this buffered amount,
//! default = send buffer), --ramp-ms 10 (delay between peer starts), --grace-s 20,
//! --delay-ms 0 (added one-way delay in each direction, emulated inside the client since
//! this kernel has no netem: RTT grows by 2 x delay).

use std::collections::{HashMap, VecDeque};
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::change::SdpAnswer;
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};

use webrtc_spike::framing::{chunk_payload, split_chunk, Ack};
use webrtc_spike::stats::{percentile, udp_kernel_errors};
use webrtc_spike::{http, Args};

#[derive(Clone)]
struct Config {
    server: String,
    chunk_size: usize,
    /// Chunks per peer; 0 = as many as fit in `duration`.
    chunks: u64,
    interval: Duration,
    duration: Duration,
    send_buffer: usize,
    high_water: usize,
    grace: Duration,
    peers: usize,
    delay: Duration,
}

/// Shared between the peer threads and main: barriers for the RSS snapshots.
#[derive(Default)]
struct Shared {
    /// Channels open.
    open: AtomicUsize,
    /// Peers that never got an open channel.
    failed: AtomicUsize,
    /// Peers done sending, waiting for release.
    ready: AtomicUsize,
    /// Peers whose run ended with an error.
    errored: AtomicUsize,
    start_sending: AtomicBool,
    release: AtomicBool,
}

#[derive(Default)]
struct PeerResult {
    error: Option<String>,
    connect: Option<Duration>,
    /// Offer POSTed -> answer received (signalling only).
    answer: Option<Duration>,
    open_at: Option<Instant>,
    last_ack_at: Option<Instant>,
    chunks_sent: u64,
    acks_ok: u64,
    acks_bad: u64,
    /// First message of the chunk accepted by `Channel::write` -> ack received.
    lat_write: Vec<f64>,
    /// Chunk due (produced) -> ack received: includes waiting for send-buffer room.
    lat_due: Vec<f64>,
    write_full: u64,
    low_events: u64,
    max_buffered: usize,
}

struct OutChunk {
    id: u64,
    due: Instant,
    msgs: Vec<Vec<u8>>,
    next: usize,
    first_write: Option<Instant>,
}

fn main() -> anyhow::Result<()> {
    let a = Args::from_env();
    let send_buffer = a.val("send-buffer", 128 * 1024);
    let cfg = Config {
        server: a.get("server").unwrap_or("127.0.0.1:8001").to_string(),
        chunk_size: a.val("chunk-size", 150_000),
        chunks: a.val("chunks", 0),
        interval: Duration::from_millis(a.val("interval-ms", 2000)),
        duration: Duration::from_secs(a.val("duration-s", 60)),
        send_buffer,
        high_water: a.val("high-water", send_buffer),
        grace: Duration::from_secs(a.val("grace-s", 20)),
        peers: a.val("peers", 1),
        delay: Duration::from_millis(a.val("delay-ms", 0)),
    };
    let ramp = Duration::from_millis(a.val("ramp-ms", 10));
    str0m::crypto::from_feature_flags().install_process_default();

    let kernel_before = udp_kernel_errors();
    let idle = http::request(&cfg.server, "GET", "/stats", "")?;
    println!("server idle:      {}", idle.trim());

    let shared = Arc::new(Shared::default());
    let t0 = Instant::now();
    let mut handles = vec![];
    for i in 0..cfg.peers {
        let (cfg, shared) = (cfg.clone(), shared.clone());
        handles.push(
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    std::thread::sleep(ramp * i as u32);
                    let mut r = PeerResult::default();
                    if let Err(e) = run_peer(i, &cfg, &shared, &mut r) {
                        r.error = Some(format!("{e:#}"));
                        shared.errored.fetch_add(1, SeqCst);
                    }
                    if r.open_at.is_none() {
                        shared.failed.fetch_add(1, SeqCst);
                    }
                    r
                })?,
        );
    }

    // Barrier 1: all channels open (or failed) -> snapshot server with N connected peers.
    while shared.open.load(SeqCst) + shared.failed.load(SeqCst) < cfg.peers
        && t0.elapsed() < Duration::from_secs(120)
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let setup = t0.elapsed();
    std::thread::sleep(Duration::from_secs(1));
    let connected = http::request(&cfg.server, "GET", "/stats", "")?;
    println!(
        "channels open:    {}/{} after {:.2}s",
        shared.open.load(SeqCst),
        cfg.peers,
        setup.as_secs_f64()
    );
    println!("server connected: {}", connected.trim());
    shared.start_sending.store(true, SeqCst);
    let send_start = Instant::now();

    // Barrier 2: every peer done sending (all acked, or grace expired) or gone with an
    // error -> snapshot the server still holding the connections, then release them.
    while shared.ready.load(SeqCst) + shared.errored.load(SeqCst) < cfg.peers {
        std::thread::sleep(Duration::from_millis(50));
    }
    let send_elapsed = send_start.elapsed();
    let loaded = http::request(&cfg.server, "GET", "/stats", "").unwrap_or_default();
    shared.release.store(true, SeqCst);
    let results: Vec<PeerResult> = handles
        .into_iter()
        .map(|h| {
            h.join().unwrap_or_else(|_| PeerResult {
                error: Some("peer thread panicked".into()),
                ..Default::default()
            })
        })
        .collect();
    let kernel_after = udp_kernel_errors();
    println!("server after:     {}", loaded.trim());
    report(
        &cfg,
        &results,
        send_start,
        send_elapsed,
        kernel_before,
        kernel_after,
    );
    Ok(())
}

fn run_peer(idx: usize, cfg: &Config, shared: &Shared, r: &mut PeerResult) -> anyhow::Result<()> {
    let started = Instant::now();
    // One UDP socket per client peer, like a capture agent.
    let socket = webrtc_spike::udp_socket("127.0.0.1:0".parse()?, 1 << 20)?;
    let local = socket.local_addr()?;

    let mut rtc = Rtc::builder()
        .set_sctp_max_buffered_amount(cfg.send_buffer)
        .build(Instant::now());
    rtc.add_local_candidate(Candidate::host(local, "udp")?);

    // The client is the offerer and creates the (ordered, reliable) channel.
    let mut api = rtc.sdp_api();
    let cid = api.add_channel("chunks".into());
    let (offer, pending) = api.apply().expect("a channel was added");
    let posted = Instant::now();
    let answer = http::request(&cfg.server, "POST", "/offer", &offer.to_sdp_string())?;
    r.answer = Some(posted.elapsed());
    rtc.sdp_api()
        .accept_answer(pending, SdpAnswer::from_sdp_string(&answer)?)?;

    let mut buf = vec![0u8; 2048];
    let mut queue: VecDeque<OutChunk> = VecDeque::new();
    let mut in_flight: HashMap<u64, (Instant, Instant)> = HashMap::new(); // id -> (due, first write)
    let mut next_id = 0u64;
    let mut send_t0: Option<Instant> = None;
    let mut done_at: Option<Instant> = None;
    let mut ready_counted = false;
    let offset = cfg.interval.mul_f64(idx as f64 / cfg.peers.max(1) as f64);
    let total = if cfg.chunks > 0 {
        cfg.chunks
    } else {
        (cfg.duration.as_millis() / cfg.interval.as_millis().max(1)) as u64
    };
    let mut last_timeout = Duration::ZERO;
    // Emulated path delay: datagrams held until their time (empty when --delay-ms 0).
    let mut out_q: VecDeque<(Instant, SocketAddr, Vec<u8>)> = VecDeque::new();
    let mut in_q: VecDeque<(Instant, SocketAddr, Vec<u8>)> = VecDeque::new();

    // str0m's contract: every mutation (handle_input, Channel::write, ...) is followed by
    // draining poll_output until Output::Timeout, before the next mutation.
    loop {
        // Drain output (after the previous mutation) until str0m tells us when to come back.
        let timeout = loop {
            match rtc.poll_output()? {
                Output::Timeout(t) => break t,
                Output::Transmit(t) => {
                    if cfg.delay.is_zero() {
                        socket.send_to(&t.contents, t.destination)?;
                    } else {
                        out_q.push_back((
                            Instant::now() + cfg.delay,
                            t.destination,
                            t.contents.to_vec(),
                        ));
                    }
                }
                Output::Event(e) => match e {
                    Event::ChannelOpen(_, _) => {
                        r.open_at = Some(Instant::now());
                        r.connect = Some(started.elapsed());
                        // Event::ChannelBufferedAmountLow fires when buffered drops below this.
                        rtc.channel(cid)
                            .expect("open")
                            .set_buffered_amount_low_threshold(cfg.high_water / 2);
                        shared.open.fetch_add(1, SeqCst);
                    }
                    Event::ChannelBufferedAmountLow(_) => r.low_events += 1,
                    Event::ChannelData(d) => {
                        let now = Instant::now();
                        let Some(ack) = Ack::decode(&d.data) else {
                            anyhow::bail!("bad ack of {} bytes", d.data.len());
                        };
                        let Some((due, first)) = in_flight.remove(&ack.chunk_id) else {
                            anyhow::bail!("ack for unknown chunk {}", ack.chunk_id);
                        };
                        if ack.ok && ack.total_len as usize == cfg.chunk_size {
                            r.acks_ok += 1;
                        } else {
                            r.acks_bad += 1;
                        }
                        r.lat_write.push((now - first).as_secs_f64() * 1e3);
                        r.lat_due.push((now - due).as_secs_f64() * 1e3);
                        r.last_ack_at = Some(now);
                    }
                    Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                        anyhow::bail!("ICE disconnected");
                    }
                    Event::ChannelClose(_) => anyhow::bail!("channel closed by server"),
                    _ => {}
                },
            }
        };

        let now = Instant::now();

        // Produce due chunks (backlog mode keeps at most 2 prepared, to bound memory).
        if r.open_at.is_some() && shared.start_sending.load(SeqCst) {
            let t0 = *send_t0.get_or_insert(now + offset);
            while next_id < total {
                let due = t0 + cfg.interval * next_id as u32;
                if due > now || queue.len() >= 2 {
                    break;
                }
                let msgs = split_chunk(next_id, &chunk_payload(next_id, cfg.chunk_size));
                queue.push_back(OutChunk {
                    id: next_id,
                    due,
                    msgs,
                    next: 0,
                    first_write: None,
                });
                next_id += 1;
            }
        }

        // Pace: write ONE message if the channel's buffered amount stays under the
        // high-water mark and `write` accepts it (Ok(false) = str0m's send buffer is full);
        // then go back and drain.
        if let Some(c) = queue.front_mut() {
            let Some(mut ch) = rtc.channel(cid) else {
                anyhow::bail!("channel gone")
            };
            let buffered = ch.buffered_amount();
            r.max_buffered = r.max_buffered.max(buffered);
            let msg = &c.msgs[c.next];
            if buffered == 0 || buffered + msg.len() <= cfg.high_water {
                if ch.write(true, msg)? {
                    if c.next == 0 {
                        c.first_write = Some(Instant::now());
                    }
                    c.next += 1;
                    if c.next == c.msgs.len() {
                        let c = queue.pop_front().unwrap();
                        in_flight.insert(c.id, (c.due, c.first_write.unwrap()));
                        r.chunks_sent += 1;
                    }
                    continue;
                }
                r.write_full += 1;
            }
        }

        // Done sending? Then wait (keeping the connection serviced) for release.
        let now = Instant::now();
        if done_at.is_none()
            && ((next_id == total && queue.is_empty() && in_flight.is_empty())
                || send_t0.is_some_and(|t| now > t + cfg.interval * total as u32 + cfg.grace))
        {
            done_at = Some(now);
        }
        if done_at.is_some() && !ready_counted {
            ready_counted = true;
            shared.ready.fetch_add(1, SeqCst);
        }
        if ready_counted && shared.release.load(SeqCst) {
            break;
        }
        if r.open_at.is_none() && started.elapsed() > Duration::from_secs(60) {
            anyhow::bail!("channel did not open within 60 s");
        }

        // Emulated delay: send what is due; a due incoming datagram is this iteration's mutation.
        while out_q.front().is_some_and(|(t, _, _)| *t <= now) {
            let (_, dest, data) = out_q.pop_front().unwrap();
            socket.send_to(&data, dest)?;
        }
        if in_q.front().is_some_and(|(t, _, _)| *t <= now) {
            let (_, source, data) = in_q.pop_front().unwrap();
            if let Ok(contents) = data.as_slice().try_into() {
                rtc.handle_input(Input::Receive(
                    now,
                    Receive {
                        proto: Protocol::Udp,
                        source,
                        destination: local,
                        contents,
                    },
                ))?;
            }
            continue;
        }

        // Timeout due: that is this iteration's mutation.
        if now >= timeout {
            rtc.handle_input(Input::Timeout(now))?;
            continue;
        }

        // Wait for a datagram until the next str0m timeout / next chunk (1..50 ms).
        let mut wake = timeout.min(now + Duration::from_millis(50));
        if let (Some(t0), true) = (send_t0, next_id < total) {
            wake = wake.min(t0 + cfg.interval * next_id as u32);
        }
        for (t, _, _) in out_q.front().into_iter().chain(in_q.front()) {
            wake = wake.min(*t);
        }
        let wait = wake
            .saturating_duration_since(now)
            .max(Duration::from_millis(1));
        if wait != last_timeout {
            socket.set_read_timeout(Some(wait))?;
            last_timeout = wait;
        }
        match socket.recv_from(&mut buf) {
            Ok((n, source)) if !cfg.delay.is_zero() => {
                in_q.push_back((Instant::now() + cfg.delay, source, buf[..n].to_vec()));
            }
            Ok((n, source)) => {
                if let Ok(contents) = buf[..n].try_into() {
                    rtc.handle_input(Input::Receive(
                        Instant::now(),
                        Receive {
                            proto: Protocol::Udp,
                            source,
                            destination: local,
                            contents,
                        },
                    ))?;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if Instant::now() >= timeout {
                    rtc.handle_input(Input::Timeout(Instant::now()))?;
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    if !in_flight.is_empty() || !queue.is_empty() || next_id < total {
        r.error = Some(format!(
            "unfinished: {} of {} chunks produced, {} queued, {} unacked",
            next_id,
            total,
            queue.len(),
            in_flight.len()
        ));
    }
    rtc.disconnect();
    Ok(())
}

fn report(
    cfg: &Config,
    rs: &[PeerResult],
    send_start: Instant,
    send_elapsed: Duration,
    kb: (u64, u64, u64),
    ka: (u64, u64, u64),
) {
    let mut lw: Vec<f64> = rs
        .iter()
        .flat_map(|r| r.lat_write.iter().copied())
        .collect();
    let mut ld: Vec<f64> = rs.iter().flat_map(|r| r.lat_due.iter().copied()).collect();
    lw.sort_by(|a, b| a.partial_cmp(b).unwrap());
    ld.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let mut conn: Vec<f64> = rs
        .iter()
        .filter_map(|r| r.connect.map(|d| d.as_secs_f64() * 1e3))
        .collect();
    conn.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let mut ans: Vec<f64> = rs
        .iter()
        .filter_map(|r| r.answer.map(|d| d.as_secs_f64() * 1e3))
        .collect();
    ans.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let sent: u64 = rs.iter().map(|r| r.chunks_sent).sum();
    let ok: u64 = rs.iter().map(|r| r.acks_ok).sum();
    let bad: u64 = rs.iter().map(|r| r.acks_bad).sum();
    let errors: Vec<&String> = rs.iter().filter_map(|r| r.error.as_ref()).collect();
    // Bulk figure: from the first write to the last ack, over all peers.
    let last_ack = rs.iter().filter_map(|r| r.last_ack_at).max();
    let bytes = ok as f64 * cfg.chunk_size as f64;
    let span = last_ack
        .map(|t| (t - send_start).as_secs_f64())
        .unwrap_or(f64::NAN);

    println!(
        "peers:            {} (failed to open: {})",
        cfg.peers,
        rs.iter().filter(|r| r.open_at.is_none()).count()
    );
    println!(
        "connect ms:       p50 {:.1} p99 {:.1} max {:.1}",
        percentile(&conn, 50.0),
        percentile(&conn, 99.0),
        conn.last().copied().unwrap_or(f64::NAN)
    );
    println!(
        "answer ms:        p50 {:.1} p99 {:.1} (offer POST -> answer, part of connect)",
        percentile(&ans, 50.0),
        percentile(&ans, 99.0)
    );
    println!(
        "chunks:           sent {sent} acked_ok {ok} acked_bad {bad} missing {}",
        sent - ok - bad
    );
    println!(
        "transfer:         {:.1} MB in {:.2} s = {:.2} MB/s ({:.1}x real time at {} ms/chunk)",
        bytes / 1e6,
        span,
        bytes / 1e6 / span,
        (ok as f64 * 2.0) / span,
        2000
    );
    println!(
        "ack latency ms (first write -> ack): p50 {:.1} p99 {:.1} max {:.1} (n={})",
        percentile(&lw, 50.0),
        percentile(&lw, 99.0),
        lw.last().copied().unwrap_or(f64::NAN),
        lw.len()
    );
    println!(
        "ack latency ms (chunk due -> ack):   p50 {:.1} p99 {:.1} max {:.1}",
        percentile(&ld, 50.0),
        percentile(&ld, 99.0),
        ld.last().copied().unwrap_or(f64::NAN)
    );
    println!("pacing:           write Ok(false) {} times, BufferedAmountLow events {}, max buffered {} B",
        rs.iter().map(|r| r.write_full).sum::<u64>(),
        rs.iter().map(|r| r.low_events).sum::<u64>(),
        rs.iter().map(|r| r.max_buffered).max().unwrap_or(0));
    println!(
        "kernel udp errors (InErrors, RcvbufErrors, SndbufErrors) during run: {:?}",
        (ka.0 - kb.0, ka.1 - kb.1, ka.2 - kb.2)
    );
    println!("send phase:       {:.2} s", send_elapsed.as_secs_f64());
    println!("errors:           {}", errors.len());
    for e in errors.iter().take(10) {
        println!("  {e}");
    }
    println!(
        "RESULT peers={} sent={sent} ok={ok} bad={bad} secs={span:.3} mbps={:.2} lat_p50={:.1} lat_p99={:.1} due_p50={:.1} due_p99={:.1} errors={}",
        cfg.peers,
        bytes / 1e6 / span,
        percentile(&lw, 50.0),
        percentile(&lw, 99.0),
        percentile(&ld, 50.0),
        percentile(&ld, 99.0),
        errors.len()
    );
}
