//! The agent's end of the WebRTC data channel (str0m, sans-IO, one UDP socket of its
//! own). The agent offers, the server (ICE-lite, one socket for all) answers over HTTPS,
//! WHIP-style. A task owns the connection: it paces writes on the channel's buffered
//! amount (memory never grows with a slow link), and matches each result the server sends
//! (once the chunk is durable) to the request waiting for it.

use crate::client::{Api, Failure, Outcome};
use protocol::channel::{Answered, ResultMessage};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use str0m::change::SdpAnswer;
use str0m::channel::ChannelId;
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

/// In `auto`, ICE, DTLS and SCTP must be up within this, or HTTPS carries on (about six
/// round trips: 3 s at 400 ms).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// With the channel as the only transport, a slow or lossy link gets longer.
pub const CONNECT_TIMEOUT_ALONE: Duration = Duration::from_secs(15);
/// What str0m may hold unsent; writes wait below `HIGH_WATER`.
const SEND_BUFFER: usize = 1024 * 1024;
const HIGH_WATER: usize = 512 * 1024;

type Key = (u8, Uuid, u32);

fn key(of: Answered, stream: Uuid, index: u32) -> Key {
    (of as u8, stream, index)
}

struct Request {
    key: Key,
    messages: VecDeque<Vec<u8>>,
    reply: oneshot::Sender<Outcome<ResultMessage>>,
}

pub struct DataChannel {
    requests: mpsc::Sender<Request>,
    alive: Arc<AtomicBool>,
    session: Option<String>,
    task: tokio::task::JoinHandle<()>,
}

fn lost(why: &str) -> Failure {
    Failure {
        status: 0,
        code: "channel_lost".into(),
        message: why.into(),
        retry_after: None,
    }
}

/// The local address that routes to `server`: the host candidate (no packet is sent).
fn local_ip_towards(server: SocketAddr) -> std::io::Result<std::net::IpAddr> {
    let probe = std::net::UdpSocket::bind(SocketAddr::new(
        if server.is_ipv4() {
            [0, 0, 0, 0].into()
        } else {
            [0u16; 8].into()
        },
        0,
    ))?;
    probe.connect(server)?;
    Ok(probe.local_addr()?.ip())
}

impl DataChannel {
    /// Offers a channel to the server and waits until it is open, at most `within`.
    pub async fn connect(api: &Api, within: Duration) -> Result<Self, Failure> {
        str0m::crypto::from_feature_flags().install_process_default();
        let server = api
            .server_addr()
            .await
            .map_err(|e| lost(&format!("server address: {e}")))?;
        let ip =
            local_ip_towards(server).map_err(|e| lost(&format!("no route to the server: {e}")))?;
        let socket = UdpSocket::bind(SocketAddr::new(ip, 0))
            .await
            .map_err(|e| lost(&format!("UDP socket: {e}")))?;
        let local = socket.local_addr().map_err(|e| lost(&e.to_string()))?;
        let mut rtc = Rtc::builder()
            .set_sctp_max_buffered_amount(SEND_BUFFER)
            .build(Instant::now());
        rtc.add_local_candidate(
            Candidate::host(local, "udp").map_err(|e| lost(&format!("candidate: {e}")))?,
        );
        let mut sdp = rtc.sdp_api();
        let channel = sdp.add_channel("chunks".into());
        let (offer, pending) = sdp.apply().ok_or_else(|| lost("no offer"))?;
        let (answer, session) = api.webrtc_offer(&offer.to_sdp_string()).await?;
        let answer =
            SdpAnswer::from_sdp_string(&answer).map_err(|e| lost(&format!("SDP answer: {e}")))?;
        rtc.sdp_api()
            .accept_answer(pending, answer)
            .map_err(|e| lost(&format!("SDP answer refused: {e}")))?;

        let (requests, rx) = mpsc::channel(4);
        let alive = Arc::new(AtomicBool::new(true));
        let (open_tx, open_rx) = oneshot::channel();
        let task = tokio::spawn(run(rtc, socket, local, channel, rx, alive.clone(), open_tx));
        match tokio::time::timeout(within, open_rx).await {
            Ok(Ok(())) => Ok(Self {
                requests,
                alive,
                session,
                task,
            }),
            _ => {
                task.abort();
                if let Some(s) = session {
                    let _ = api.webrtc_close(&s).await;
                }
                Err(lost("the data channel did not open in time (UDP blocked?)"))
            }
        }
    }

    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst) && !self.task.is_finished()
    }

    /// Sends `messages` and waits for the server's result for (`of`, `stream`, `index`).
    pub async fn request(
        &self,
        of: Answered,
        stream: Uuid,
        index: u32,
        messages: Vec<Vec<u8>>,
    ) -> Outcome<ResultMessage> {
        let (reply, answer) = oneshot::channel();
        let r = Request {
            key: key(of, stream, index),
            messages: messages.into(),
            reply,
        };
        self.requests
            .send(r)
            .await
            .map_err(|_| lost("the data channel closed"))?;
        answer.await.map_err(|_| lost("the data channel closed"))?
    }

    /// Ends the session on the server (best effort) and stops the task.
    pub async fn close(&self, api: &Api) {
        self.task.abort();
        if let Some(s) = &self.session {
            let _ = api.webrtc_close(s).await;
        }
    }
}

impl Drop for DataChannel {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run(
    mut rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    channel: ChannelId,
    mut requests: mpsc::Receiver<Request>,
    alive: Arc<AtomicBool>,
    open: oneshot::Sender<()>,
) {
    let mut open = Some(open);
    let mut is_open = false;
    let mut sending: VecDeque<Request> = VecDeque::new();
    let mut waiting: HashMap<Key, oneshot::Sender<Outcome<ResultMessage>>> = HashMap::new();
    let mut buf = vec![0u8; 2048];
    let fail_all = |waiting: &mut HashMap<Key, oneshot::Sender<Outcome<ResultMessage>>>,
                    sending: &mut VecDeque<Request>,
                    why: &str| {
        for (_, r) in waiting.drain() {
            let _ = r.send(Err(lost(why)));
        }
        for r in sending.drain(..) {
            let _ = r.reply.send(Err(lost(why)));
        }
    };
    loop {
        // Drain str0m's output after the last input; write what pacing allows.
        let timeout = loop {
            let out = match rtc.poll_output() {
                Ok(o) => o,
                Err(e) => {
                    tracing::debug!(error = ?e, "data channel output");
                    alive.store(false, Ordering::SeqCst);
                    return fail_all(&mut waiting, &mut sending, "data channel error");
                }
            };
            match out {
                Output::Timeout(t) => {
                    if is_open && write_some(&mut rtc, channel, &mut sending, &mut waiting) {
                        continue;
                    }
                    break t;
                }
                Output::Transmit(t) => {
                    let _ = socket.send_to(&t.contents, t.destination).await;
                }
                Output::Event(Event::ChannelOpen(..)) => {
                    is_open = true;
                    if let Some(mut ch) = rtc.channel(channel) {
                        ch.set_buffered_amount_low_threshold(HIGH_WATER / 2);
                    }
                    if let Some(o) = open.take() {
                        let _ = o.send(());
                    }
                }
                Output::Event(Event::ChannelData(d)) => match ResultMessage::parse(&d.data) {
                    Ok(r) => {
                        let k = key(r.of, r.stream, r.index);
                        if let Some(reply) = waiting.remove(&k) {
                            let _ = reply.send(Ok(r));
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "unreadable result on the data channel"),
                },
                Output::Event(Event::IceConnectionStateChange(
                    IceConnectionState::Disconnected,
                ))
                | Output::Event(Event::ChannelClose(_)) => {
                    rtc.disconnect();
                }
                Output::Event(_) => {}
            }
            if !rtc.is_alive() {
                alive.store(false, Ordering::SeqCst);
                return fail_all(&mut waiting, &mut sending, "the data channel closed");
            }
        };
        let now = Instant::now();
        if timeout <= now {
            if rtc.handle_input(Input::Timeout(now)).is_err() {
                rtc.disconnect();
            }
            continue;
        }
        tokio::select! {
            received = socket.recv_from(&mut buf) => {
                if let Ok((n, source)) = received {
                    if let Ok(contents) = buf[..n].try_into() {
                        let input = Input::Receive(Instant::now(), Receive { proto: Protocol::Udp, source, destination: local, contents });
                        if rtc.handle_input(input).is_err() {
                            rtc.disconnect();
                        }
                    }
                }
            }
            request = requests.recv() => match request {
                Some(r) => sending.push_back(r),
                None => {
                    rtc.disconnect();
                    alive.store(false, Ordering::SeqCst);
                    return fail_all(&mut waiting, &mut sending, "closed");
                }
            },
            _ = tokio::time::sleep_until(timeout.into()) => {
                if rtc.handle_input(Input::Timeout(Instant::now())).is_err() {
                    rtc.disconnect();
                }
            }
        }
    }
}

/// Writes the next message if the buffered amount allows; true when it wrote one.
fn write_some(
    rtc: &mut Rtc,
    channel: ChannelId,
    sending: &mut VecDeque<Request>,
    waiting: &mut HashMap<Key, oneshot::Sender<Outcome<ResultMessage>>>,
) -> bool {
    let Some(front) = sending.front_mut() else {
        return false;
    };
    let Some(mut ch) = rtc.channel(channel) else {
        return false;
    };
    let Some(message) = front.messages.front() else {
        return false;
    };
    let buffered = ch.buffered_amount();
    if buffered > 0 && buffered + message.len() > HIGH_WATER {
        return false;
    }
    match ch.write(true, message) {
        Ok(true) => {
            front.messages.pop_front();
            if front.messages.is_empty() {
                let done = sending.pop_front().expect("front exists");
                waiting.insert(done.key, done.reply);
            }
            true
        }
        Ok(false) => false,
        Err(_) => {
            rtc.disconnect();
            false
        }
    }
}
