//! str0m server: ICE-lite, ONE UDP socket for every peer, sans-IO run loop on one thread.
//!
//! HTTP (blocking, thread per request): `POST /offer` (SDP offer in, SDP answer out),
//! `GET /stats`. The `Rtc` built by the HTTP thread is handed to the UDP loop over a channel
//! before the answer goes out.
//!
//! Usage: str0m-server [--http 127.0.0.1:8001] [--udp 127.0.0.1:5000] [--max-chunk 8388608]
//!                     [--udp-buf 4194304]   (kernel buffer of the socket; 0 = default)

use std::collections::{HashMap, VecDeque};
use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use str0m::change::SdpOffer;
use str0m::channel::ChannelId;
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};

use webrtc_spike::framing::Reassembler;
use webrtc_spike::http::{self, Request};
use webrtc_spike::stats::ServerStats;
use webrtc_spike::Args;

/// Bound on acks waiting for send-buffer room, per peer (acks are 13 bytes; in practice
/// this queue stays empty).
const MAX_PENDING_ACKS: usize = 1024;

fn main() -> anyhow::Result<()> {
    let args = Args::from_env();
    let http_addr = args.get("http").unwrap_or("127.0.0.1:8001").to_string();
    let udp_addr: SocketAddr = args.get("udp").unwrap_or("127.0.0.1:5000").parse()?;
    let max_chunk: usize = args.val("max-chunk", 8 << 20);

    str0m::crypto::from_feature_flags().install_process_default();

    // The one UDP socket all peers share.
    let socket = webrtc_spike::udp_socket(udp_addr, args.val("udp-buf", 4 << 20))?;
    let local = socket.local_addr()?;
    let stats = Arc::new(ServerStats::default());

    // New peers go to the UDP loop with a reply channel. The HTTP answer is sent only once
    // the loop holds the Rtc: otherwise the client's first STUN check arrives first, matches
    // no Rtc, and ICE waits for a retransmission (~250 ms).
    let (tx, rx) = mpsc::channel::<(Rtc, mpsc::SyncSender<()>)>();
    let tx = Mutex::new(tx);
    let waker = socket.try_clone()?; // same socket (dup'ed fd), not a second one
    let st = stats.clone();
    let handler: http::Handler =
        Arc::new(
            move |req: Request| match (req.method.as_str(), req.path.as_str()) {
                ("POST", "/offer") => match answer(&req.body, local) {
                    Ok((rtc, sdp)) => {
                        st.offers.fetch_add(1, Relaxed);
                        let (done_tx, done_rx) = mpsc::sync_channel(1);
                        tx.lock()
                            .unwrap()
                            .send((rtc, done_tx))
                            .expect("udp loop alive");
                        // Wake the loop out of recv_from with an empty datagram (ignored there).
                        let _ = waker.send_to(&[], local);
                        let _ = done_rx.recv_timeout(Duration::from_secs(1));
                        (201, sdp)
                    }
                    Err(e) => (400, format!("{e}\n")),
                },
                ("GET", "/stats") => (200, st.line() + "\n"),
                _ => (404, "not found\n".into()),
            },
        );
    let listener = TcpListener::bind(&http_addr)?;
    std::thread::spawn(move || http::serve(listener, handler));
    println!("str0m-server: http {http_addr}, udp {local} (one socket for all peers)");

    run(socket, rx, stats, max_chunk);
    Ok(())
}

/// Build an ICE-lite `Rtc` for one peer and answer its offer.
fn answer(body: &[u8], local: SocketAddr) -> anyhow::Result<(Rtc, String)> {
    let offer = SdpOffer::from_sdp_string(std::str::from_utf8(body)?)?;
    let mut rtc = Rtc::builder().set_ice_lite(true).build(Instant::now());
    // Every peer gets the same host candidate: the shared socket.
    rtc.add_local_candidate(Candidate::host(local, "udp")?);
    let answer = rtc.sdp_api().accept_offer(offer)?;
    Ok((rtc, answer.to_sdp_string()))
}

struct Peer {
    rtc: Rtc,
    cid: Option<ChannelId>,
    reasm: Reassembler,
    pending_acks: VecDeque<[u8; webrtc_spike::framing::ACK_LEN]>,
    next_timeout: Instant,
    connected: bool,
}

/// The sans-IO run loop: demultiplex datagrams with `Rtc::accepts`, drive timeouts,
/// send every `Output::Transmit` on the shared socket.
fn run(
    socket: UdpSocket,
    rx: Receiver<(Rtc, mpsc::SyncSender<()>)>,
    stats: Arc<ServerStats>,
    max_chunk: usize,
) {
    let local = socket.local_addr().unwrap();
    let mut peers: Vec<Peer> = Vec::new();
    // Fast path for demux: remote address -> index, confirmed with `accepts`.
    let mut by_addr: HashMap<SocketAddr, usize> = HashMap::new();
    let mut buf = vec![0u8; 2048];
    let mut last_timeout_set = Duration::ZERO;

    loop {
        // New peers from the HTTP thread (accept_offer was their last mutation: drain).
        loop {
            match rx.try_recv() {
                Ok((rtc, done)) => {
                    let mut p = Peer {
                        rtc,
                        cid: None,
                        reasm: Reassembler::new(max_chunk),
                        pending_acks: VecDeque::new(),
                        next_timeout: Instant::now(),
                        connected: false,
                    };
                    drain(&mut p, &socket, &stats);
                    peers.push(p);
                    let _ = done.send(());
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return,
            }
        }

        // Drive time forward for the peers whose timeout has passed.
        let now = Instant::now();
        for p in peers.iter_mut().filter(|p| p.next_timeout <= now) {
            if let Err(e) = p.rtc.handle_input(Input::Timeout(now)) {
                eprintln!("timeout input: {e:?}");
                p.rtc.disconnect();
            }
            drain(p, &socket, &stats);
        }

        // Forget dead peers.
        if peers.iter().any(|p| !p.rtc.is_alive()) {
            for p in peers.iter().filter(|p| !p.rtc.is_alive()) {
                stats.disconnected.fetch_add(1, Relaxed);
                if p.connected {
                    stats.connected.fetch_sub(1, Relaxed);
                }
                if p.cid.is_some() {
                    stats.channels_open.fetch_sub(1, Relaxed);
                }
            }
            peers.retain(|p| p.rtc.is_alive());
            by_addr.clear();
        }

        // Sleep in recv until the earliest timeout (at most 50 ms, to pick up new peers).
        let now = Instant::now();
        let next = peers
            .iter()
            .map(|p| p.next_timeout)
            .min()
            .unwrap_or(now + Duration::from_millis(50))
            .min(now + Duration::from_millis(50));
        let wait = next
            .saturating_duration_since(now)
            .max(Duration::from_millis(1));
        if wait != last_timeout_set {
            socket.set_read_timeout(Some(wait)).unwrap();
            last_timeout_set = wait;
        }

        let (n, source) = match socket.recv_from(&mut buf) {
            Ok(v) => v,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(e) => panic!("udp recv: {e}"),
        };
        let Ok(contents) = buf[..n].try_into() else {
            continue; // not STUN/DTLS/RTP: ignore
        };
        let input = Input::Receive(
            Instant::now(),
            Receive {
                proto: Protocol::Udp,
                source,
                destination: local,
                contents,
            },
        );

        // Demux: cached index first, else ask every Rtc (`accepts` matches the STUN
        // username fragment before nomination, the nominated pair afterwards).
        let idx = match by_addr.get(&source) {
            Some(&i) if i < peers.len() && peers[i].rtc.accepts(&input) => Some(i),
            _ => {
                let found = peers.iter().position(|p| p.rtc.accepts(&input));
                if let Some(i) = found {
                    by_addr.insert(source, i);
                }
                found
            }
        };
        let Some(i) = idx else {
            stats.unmatched_datagrams.fetch_add(1, Relaxed);
            continue;
        };
        let p = &mut peers[i];
        if let Err(e) = p.rtc.handle_input(input) {
            eprintln!("peer input: {e:?}");
            p.rtc.disconnect();
        }
        drain(p, &socket, &stats);
    }
}

/// Poll the `Rtc` until it returns `Output::Timeout` (str0m's contract after every
/// mutation). Acks are written from inside the loop, which the contract allows.
fn drain(p: &mut Peer, socket: &UdpSocket, stats: &ServerStats) {
    loop {
        if !p.rtc.is_alive() {
            p.next_timeout = Instant::now();
            return;
        }
        let out = match p.rtc.poll_output() {
            Ok(o) => o,
            Err(e) => {
                eprintln!("poll_output: {e:?}");
                p.rtc.disconnect();
                continue;
            }
        };
        match out {
            Output::Timeout(t) => {
                if p.cid.is_some() && !p.pending_acks.is_empty() && flush_acks(p) {
                    continue; // wrote something: keep draining
                }
                p.next_timeout = t;
                return;
            }
            Output::Transmit(t) => {
                if socket.send_to(&t.contents, t.destination).is_err() {
                    stats.send_errors.fetch_add(1, Relaxed);
                }
            }
            Output::Event(e) => match e {
                Event::Connected => {
                    p.connected = true;
                    stats.connected.fetch_add(1, Relaxed);
                }
                Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                    p.rtc.disconnect();
                }
                Event::ChannelOpen(cid, _label) => {
                    p.cid = Some(cid);
                    stats.channels_open.fetch_add(1, Relaxed);
                }
                Event::ChannelData(d) => {
                    stats.messages.fetch_add(1, Relaxed);
                    stats.bytes.fetch_add(d.data.len() as u64, Relaxed);
                    match p.reasm.push(&d.data) {
                        Ok(None) => {}
                        Ok(Some(ack)) => {
                            if ack.ok {
                                stats.chunks_ok.fetch_add(1, Relaxed);
                            } else {
                                stats.chunks_corrupt.fetch_add(1, Relaxed);
                            }
                            if p.pending_acks.len() >= MAX_PENDING_ACKS {
                                eprintln!("ack queue full, dropping peer");
                                p.rtc.disconnect();
                            } else {
                                p.pending_acks.push_back(ack.encode());
                                flush_acks(p);
                            }
                        }
                        Err(e) => {
                            eprintln!("protocol error: {e}");
                            stats.protocol_errors.fetch_add(1, Relaxed);
                            p.rtc.disconnect();
                        }
                    }
                }
                Event::ChannelBufferedAmountLow(_) => {
                    flush_acks(p);
                }
                _ => {}
            },
        }
    }
}

/// Write one queued ack if the send buffer has room. Returns true if it wrote.
fn flush_acks(p: &mut Peer) -> bool {
    let (Some(cid), Some(ack)) = (p.cid, p.pending_acks.front()) else {
        return false;
    };
    let Some(mut ch) = p.rtc.channel(cid) else {
        return false;
    };
    match ch.write(true, ack) {
        Ok(true) => {
            p.pending_acks.pop_front();
            true
        }
        Ok(false) => false, // send buffer full: retried at the next drain
        Err(e) => {
            eprintln!("ack write: {e:?}");
            p.rtc.disconnect();
            false
        }
    }
}
