//! The WebRTC data channel transport, beside HTTPS: str0m (sans-IO), ICE-lite, one UDP
//! socket for every agent (one firewall rule), chosen by a measured spike
//! (`spikes/webrtc/README.md`). Signalling is WHIP-style over HTTPS (`routes/agent.rs`):
//! the agent posts its SDP offer with its launch token and gets the answer.
//!
//! One task owns every peer: it demultiplexes datagrams (`Rtc::accepts`), drives
//! timeouts, reassembles each chunk from its 64 KiB parts (`protocol::channel`, bounded),
//! and hands it to **the same ingest function** as HTTPS, in a task of its own. The result
//! goes back on the channel only once the chunk is durable, with the status and code HTTPS
//! would have answered. Nothing here grows with a slow peer: one chunk in reassembly, a
//! few in ingest, a few results waiting for room in the send buffer; past that the peer is
//! refused (429) or dropped.

use crate::db::{AttemptId, StreamId};
use crate::ingest::Ingest;
use crate::ingest::Via;
use crate::liveness::Liveness;
use crate::routes::error::AppError;
use bytes::Bytes;
use protocol::channel::{AgentMessage, Answered, Reassembler, ResultMessage};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use str0m::change::SdpOffer;
use str0m::channel::ChannelId;
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use uuid::Uuid;

/// Chunks of one peer in ingest at once (the agent sends one at a time; more is hostile).
const MAX_IN_FLIGHT: usize = 4;
/// Results waiting for room in a peer's send buffer (they are ~40 bytes each).
const MAX_PENDING_RESULTS: usize = 64;
/// Sessions one attempt may hold; a new one closes the oldest (an agent restarted).
const SESSIONS_PER_ATTEMPT: usize = 2;
/// A peer whose channel is not open by then is dropped (an offer that never connects).
const OPEN_WITHIN: std::time::Duration = std::time::Duration::from_secs(30);

/// The running transport: where agents reach it, and how signalling hands it new peers.
pub struct WebRtc {
    commands: mpsc::Sender<Command>,
    candidate: SocketAddr,
    peers: Arc<std::sync::atomic::AtomicUsize>,
    max_peers: usize,
}

enum Command {
    /// A new peer; `held` says the loop has it (answering before would lose the agent's
    /// first connectivity check: ~250 ms until its retry, the spike measured).
    Open(Box<NewPeer>, tokio::sync::oneshot::Sender<()>),
    Close {
        session: Uuid,
        attempt: AttemptId,
    },
}

struct NewPeer {
    session: Uuid,
    attempt: AttemptId,
    rtc: Rtc,
    /// The launch token's credential: every chunk re-reads the attempt, as every HTTPS
    /// request does (its state may have changed since the channel opened).
    credential: String,
    via: Via,
}

struct Peer {
    attempt: AttemptId,
    rtc: Rtc,
    credential: String,
    via: Via,
    channel: Option<ChannelId>,
    reassembly: Reassembler,
    in_flight: usize,
    results: VecDeque<Vec<u8>>,
    next_timeout: Instant,
    created: Instant,
}

/// The kernel's buffers for the shared socket: with the default 208 KiB, hundreds of
/// agents overflow it and SCTP waits out its 1 s retransmission (the spike measured p99 at
/// 1 s, against 7 ms with 4 MiB). The kernel caps it at `net.core.rmem_max`.
const SOCKET_BUFFER: usize = 4 << 20;

/// The UDP socket, bound at start-up (port 0 in tests) like the TCP listeners.
pub fn bind(addr: SocketAddr) -> anyhow::Result<std::net::UdpSocket> {
    let s = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    if let Err(e) = s
        .set_recv_buffer_size(SOCKET_BUFFER)
        .and_then(|_| s.set_send_buffer_size(SOCKET_BUFFER))
    {
        tracing::warn!(error = %e, "could not enlarge the WebRTC socket's buffers");
    }
    s.bind(&addr.into())
        .map_err(|e| anyhow::anyhow!("binding UDP {addr} for WebRTC: {e}"))?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

/// What the channel's messages reach: the agent's use cases, and the bounds they keep.
#[derive(Clone)]
pub struct Agents {
    pub ingest: Arc<Ingest>,
    pub liveness: Arc<Liveness>,
    pub max_peers: usize,
    pub max_chunk_bytes: u64,
}

impl WebRtc {
    /// Starts the peers' task on `socket`; `announce` is the address agents are told to
    /// send to (the socket's own, unless it listens on every interface or behind NAT).
    pub fn start(
        agents: Agents,
        socket: std::net::UdpSocket,
        announce: SocketAddr,
    ) -> anyhow::Result<Self> {
        str0m::crypto::from_feature_flags().install_process_default();
        let socket = UdpSocket::from_std(socket)?;
        let (commands, rx) = mpsc::channel(256);
        let peers = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        tokio::spawn(run(agents.clone(), socket, announce, rx, peers.clone()));
        Ok(Self {
            commands,
            candidate: announce,
            peers,
            max_peers: agents.max_peers,
        })
    }

    pub fn announced(&self) -> SocketAddr {
        self.candidate
    }

    /// Answers an agent's offer: a new ICE-lite peer on the shared socket. Returns the
    /// session (for `DELETE`) and the SDP answer.
    pub async fn answer(
        &self,
        attempt: AttemptId,
        credential: String,
        via: Via,
        offer: &str,
    ) -> Result<(Uuid, String), AppError> {
        if self.peers.load(std::sync::atomic::Ordering::Relaxed) >= self.max_peers {
            return Err(AppError::Overloaded);
        }
        let offer = SdpOffer::from_sdp_string(offer)
            .map_err(|e| AppError::BadRequest(format!("not an SDP offer: {e}")))?;
        let mut rtc = Rtc::builder().set_ice_lite(true).build(Instant::now());
        let candidate = Candidate::host(self.candidate, "udp")
            .map_err(|e| AppError::Internal(anyhow::anyhow!("candidate: {e}")))?;
        rtc.add_local_candidate(candidate);
        let answer = rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| AppError::BadRequest(format!("the offer cannot be answered: {e}")))?;
        let session = Uuid::new_v4();
        let peer = NewPeer {
            session,
            attempt,
            rtc,
            credential,
            via,
        };
        let (held, holding) = tokio::sync::oneshot::channel();
        let gone = || AppError::Internal(anyhow::anyhow!("the WebRTC task is gone"));
        self.commands
            .send(Command::Open(Box::new(peer), held))
            .await
            .map_err(|_| gone())?;
        holding.await.map_err(|_| gone())?;
        Ok((session, answer.to_sdp_string()))
    }

    /// The agent ends its session (`DELETE`); only its own.
    pub async fn close(&self, session: Uuid, attempt: AttemptId) {
        let _ = self
            .commands
            .send(Command::Close { session, attempt })
            .await;
    }

    pub fn connected(&self) -> usize {
        self.peers.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// `local` is the announced address, not the socket's: str0m matches each datagram's
/// destination against its local candidate, and behind a NAT (or a relay) the two differ.
async fn run(
    agents: Agents,
    socket: UdpSocket,
    local: SocketAddr,
    mut commands: mpsc::Receiver<Command>,
    count: Arc<std::sync::atomic::AtomicUsize>,
) {
    let (results_tx, mut results) = mpsc::unbounded_channel::<(Uuid, Vec<u8>, bool)>();
    let mut peers: HashMap<Uuid, Peer> = HashMap::new();
    let mut by_source: HashMap<SocketAddr, Uuid> = HashMap::new();
    let mut buf = vec![0u8; 2048];
    loop {
        let next = peers
            .values()
            .map(|p| p.next_timeout)
            .min()
            .unwrap_or_else(|| Instant::now() + std::time::Duration::from_secs(1));
        tokio::select! {
            received = socket.recv_from(&mut buf) => {
                let (n, source) = match received {
                    Ok(r) => r,
                    Err(e) => { tracing::debug!(error = %e, "UDP receive"); continue }
                };
                let Ok(contents) = buf[..n].try_into() else { continue };
                let input = Input::Receive(Instant::now(), Receive { proto: Protocol::Udp, source, destination: local, contents });
                let known = by_source.get(&source).copied().filter(|s| peers.get(s).is_some_and(|p| p.rtc.accepts(&input)));
                // Only a STUN message (first two bits zero) may come from a new address: a
                // flood of anything else costs one lookup, not a scan of every peer.
                let stun = buf[0] < 2;
                let Some(session) = known.or_else(|| if stun { peers.iter().find(|(_, p)| p.rtc.accepts(&input)).map(|(s, _)| *s) } else { None }) else { continue };
                by_source.insert(source, session);
                let peer = peers.get_mut(&session).expect("found above");
                if let Err(e) = peer.rtc.handle_input(input) {
                    tracing::debug!(error = ?e, "peer input refused");
                    peer.rtc.disconnect();
                }
                drain(&agents, session, peer, &socket, &results_tx).await;
            }
            command = commands.recv() => match command {
                Some(Command::Open(p, held)) => {
                    let NewPeer { session, attempt, rtc, credential, via } = *p;
                    // One token holds at most SESSIONS_PER_ATTEMPT sessions: the oldest goes.
                    let mut same: Vec<_> = peers.iter_mut().filter(|(_, p)| p.attempt == attempt && p.rtc.is_alive()).collect();
                    if same.len() >= SESSIONS_PER_ATTEMPT {
                        same.sort_by_key(|(_, p)| p.created);
                        same[0].1.rtc.disconnect();
                    }
                    let mut peer = Peer {
                        attempt,
                        rtc,
                        credential,
                        via,
                        channel: None,
                        reassembly: Reassembler::new(agents.max_chunk_bytes as usize),
                        in_flight: 0,
                        results: VecDeque::new(),
                        next_timeout: Instant::now(),
                        created: Instant::now(),
                    };
                    drain(&agents, session, &mut peer, &socket, &results_tx).await;
                    peers.insert(session, peer);
                    let _ = held.send(());
                }
                Some(Command::Close { session, attempt }) => {
                    if let Some(p) = peers.get_mut(&session).filter(|p| p.attempt == attempt) {
                        p.rtc.disconnect();
                    }
                }
                None => return,
            },
            Some((session, message, done)) = results.recv() => {
                if let Some(peer) = peers.get_mut(&session) {
                    if done {
                        peer.in_flight = peer.in_flight.saturating_sub(1);
                    }
                    if peer.results.len() >= MAX_PENDING_RESULTS {
                        tracing::warn!(attempt = %peer.attempt, "peer does not read its results: dropped");
                        peer.rtc.disconnect();
                    } else {
                        peer.results.push_back(message);
                    }
                    drain(&agents, session, peer, &socket, &results_tx).await;
                }
            }
            _ = tokio::time::sleep_until(next.into()) => {
                let now = Instant::now();
                let due: Vec<Uuid> = peers.iter().filter(|(_, p)| p.next_timeout <= now).map(|(s, _)| *s).collect();
                for session in due {
                    let peer = peers.get_mut(&session).expect("listed above");
                    if peer.channel.is_none() && peer.created.elapsed() > OPEN_WITHIN {
                        peer.rtc.disconnect();
                    }
                    if let Err(e) = peer.rtc.handle_input(Input::Timeout(now)) {
                        tracing::debug!(error = ?e, "peer timeout input");
                        peer.rtc.disconnect();
                    }
                    drain(&agents, session, peer, &socket, &results_tx).await;
                }
            }
        }
        if peers.values().any(|p| !p.rtc.is_alive()) {
            peers.retain(|_, p| p.rtc.is_alive());
            by_source.retain(|_, s| peers.contains_key(s));
        }
        count.store(peers.len(), std::sync::atomic::Ordering::Relaxed);
    }
}

/// Polls a peer until str0m says when to come back (its contract after every input),
/// sending what it transmits and acting on its events.
async fn drain(
    agents: &Agents,
    session: Uuid,
    p: &mut Peer,
    socket: &UdpSocket,
    results: &mpsc::UnboundedSender<(Uuid, Vec<u8>, bool)>,
) {
    loop {
        if !p.rtc.is_alive() {
            p.next_timeout = Instant::now();
            return;
        }
        let out = match p.rtc.poll_output() {
            Ok(o) => o,
            Err(e) => {
                tracing::debug!(error = ?e, "peer output");
                p.rtc.disconnect();
                continue;
            }
        };
        match out {
            Output::Timeout(t) => {
                if flush_results(p) {
                    continue;
                }
                p.next_timeout = t;
                return;
            }
            Output::Transmit(t) => {
                let _ = socket.send_to(&t.contents, t.destination).await;
            }
            Output::Event(Event::ChannelOpen(cid, _)) => p.channel = Some(cid),
            Output::Event(Event::IceConnectionStateChange(IceConnectionState::Disconnected)) => {
                p.rtc.disconnect()
            }
            Output::Event(Event::ChannelBufferedAmountLow(_)) => {
                flush_results(p);
            }
            Output::Event(Event::ChannelData(d)) => {
                if let Err(why) = on_message(agents, session, p, &d.data, results) {
                    tracing::warn!(attempt = %p.attempt, %why, "protocol violation on the data channel: peer dropped");
                    p.rtc.disconnect();
                }
            }
            Output::Event(_) => {}
        }
    }
}

/// Writes waiting results while the send buffer takes them; true when it wrote one.
fn flush_results(p: &mut Peer) -> bool {
    let (Some(cid), Some(front)) = (p.channel, p.results.front()) else {
        return false;
    };
    let Some(mut ch) = p.rtc.channel(cid) else {
        return false;
    };
    match ch.write(true, front) {
        Ok(true) => {
            p.results.pop_front();
            true
        }
        Ok(false) => false,
        Err(_) => {
            p.rtc.disconnect();
            false
        }
    }
}

/// A transfer's result as the channel says it: the same status, code and retry delay an
/// HTTP upload gets (`routes/errors.rs`).
fn result_of(
    of: Answered,
    stream: StreamId,
    index: u32,
    outcome: Result<u16, impl Into<AppError>>,
) -> Vec<u8> {
    let (status, code, retry_after_s) = match outcome.map_err(Into::into) {
        Ok(status) => (status, String::new(), 0),
        Err(e) => {
            let (status, code) = e.status_and_code();
            (
                status.as_u16(),
                code.to_owned(),
                e.retry_after_s().unwrap_or(0) as u32,
            )
        }
    };
    ResultMessage {
        of,
        status,
        stream: stream.into(),
        index,
        retry_after_s,
        code,
    }
    .encode()
}

fn on_message(
    agents: &Agents,
    session: Uuid,
    p: &mut Peer,
    message: &[u8],
    results: &mpsc::UnboundedSender<(Uuid, Vec<u8>, bool)>,
) -> Result<(), String> {
    let (agents, credential, via, tx) = (
        agents.clone(),
        p.credential.clone(),
        p.via.clone(),
        results.clone(),
    );
    match AgentMessage::parse(message).map_err(|e| e.to_string())? {
        AgentMessage::Part {
            stream,
            index,
            part,
            last,
            bytes,
        } => {
            let Some((stream, index, chunk)) = p
                .reassembly
                .push(stream, index, part, last, bytes)
                .map_err(|e| e.to_string())?
            else {
                return Ok(());
            };
            let stream = StreamId::from(stream);
            if p.in_flight >= MAX_IN_FLIGHT {
                let _ = tx.send((
                    session,
                    result_of(
                        Answered::Chunk,
                        stream,
                        index,
                        Err(AppError::TooManyUploads),
                    ),
                    false,
                ));
                return Ok(());
            }
            p.in_flight += 1;
            tokio::spawn(async move {
                let started = Instant::now();
                let size = chunk.len();
                let outcome = async {
                    let who = agents
                        .ingest
                        .authenticate_agent(&credential)
                        .await
                        .inspect_err(Ingest::refused)?;
                    let read = |_| async move { Ok(Bytes::from(chunk)) };
                    agents
                        .ingest
                        .receive_chunk(&who, stream, index, size as u64, read, &via, started)
                        .await
                }
                .await;
                let status = outcome.map(|ack| if ack.created { 201 } else { 200 });
                let _ = tx.send((
                    session,
                    result_of(Answered::Chunk, stream, index, status),
                    true,
                ));
            });
        }
        // Control messages share the peer's bound: beyond it a heartbeat is dropped (the
        // next one says the same; after an outage the channel delivers those it queued all
        // at once) and a stream's end is refused for a retry, never spawned.
        AgentMessage::Heartbeat { .. } if p.in_flight >= MAX_IN_FLIGHT => {}
        AgentMessage::End {
            stream,
            final_index,
        } if p.in_flight >= MAX_IN_FLIGHT => {
            let stream = StreamId::from(stream);
            let _ = tx.send((
                session,
                result_of(
                    Answered::End,
                    stream,
                    final_index,
                    Err(AppError::TooManyUploads),
                ),
                false,
            ));
        }
        AgentMessage::End {
            stream,
            final_index,
        } => {
            let stream = StreamId::from(stream);
            p.in_flight += 1;
            tokio::spawn(async move {
                let outcome = async {
                    let who = agents.ingest.authenticate_agent(&credential).await?;
                    agents
                        .ingest
                        .end_stream(
                            &who,
                            stream,
                            protocol::api::EndStreamRequest { final_index },
                        )
                        .await
                }
                .await;
                let _ = tx.send((
                    session,
                    result_of(Answered::End, stream, final_index, outcome.map(|_| 204)),
                    true,
                ));
            });
        }
        AgentMessage::Heartbeat {
            backlog_chunks,
            backlog_bytes,
        } => {
            p.in_flight += 1;
            tokio::spawn(async move {
                let outcome = async {
                    let who = agents.ingest.authenticate_agent(&credential).await?;
                    agents
                        .liveness
                        .heartbeat(
                            &who,
                            protocol::api::Heartbeat {
                                backlog_chunks,
                                backlog_bytes,
                            },
                        )
                        .await
                        .map_err(AppError::from)
                }
                .await;
                let _ = tx.send((
                    session,
                    result_of(
                        Answered::Heartbeat,
                        StreamId::from(Uuid::nil()),
                        0,
                        outcome.map(|_| 204),
                    ),
                    true,
                ));
            });
        }
    }
    Ok(())
}
