//! webrtc-rs (webrtc 0.21) server: one `PeerConnection` per peer on a tokio runtime.
//! webrtc 0.21 binds its own UDP socket(s) per PeerConnection (`with_udp_addrs`); the
//! UDP mux of older releases is not there (a `todo` in rtc's SettingEngine), so N peers
//! means N ports. mDNS is disabled (it would add one multicast socket per peer).
//!
//! HTTP (blocking, thread per request): `POST /offer`, `GET /stats`.
//!
//! Usage: webrtc-server [--http 127.0.0.1:8002] [--ip 127.0.0.1] [--lite] [--workers 2]
//!                      [--udp-buf 4194304]   (kernel buffer per UDP socket; 0 = default)

use std::net::TcpListener;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use rtc::ice::mdns::MulticastDnsMode;
use tokio::sync::Notify;
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCIceGatheringState, RTCPeerConnectionState, RTCSessionDescription, SettingEngineBuilder,
};

use webrtc::runtime::{
    AsyncInterval, AsyncTcpListener, AsyncTcpStream, AsyncUdpSocket, JoinHandle, Runtime,
    TokioRuntime,
};
use webrtc_spike::framing::Reassembler;
use webrtc_spike::http::{self, Request};
use webrtc_spike::stats::ServerStats;
use webrtc_spike::Args;

/// The tokio runtime of webrtc-rs, except that every UDP socket the crate binds gets
/// `buf` bytes of kernel buffer (webrtc-rs has no setting for it; `Runtime::wrap_udp_socket`
/// is the one hook). 0 = leave the kernel default (208 KiB here).
#[derive(Debug)]
struct BigBufRuntime {
    inner: TokioRuntime,
    buf: usize,
}

type BoxFut<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

impl Runtime for BigBufRuntime {
    #[track_caller]
    fn spawn(&self, f: BoxFut<'static, ()>) -> Box<dyn JoinHandle> {
        self.inner.spawn(f)
    }
    fn wrap_udp_socket(&self, s: std::net::UdpSocket) -> std::io::Result<Arc<dyn AsyncUdpSocket>> {
        if self.buf > 0 {
            let r = socket2::SockRef::from(&s);
            let _ = r.set_recv_buffer_size(self.buf);
            let _ = r.set_send_buffer_size(self.buf);
        }
        self.inner.wrap_udp_socket(s)
    }
    fn wrap_tcp_listener(
        &self,
        l: std::net::TcpListener,
    ) -> std::io::Result<Arc<dyn AsyncTcpListener>> {
        self.inner.wrap_tcp_listener(l)
    }
    fn connect_tcp<'a>(
        &'a self,
        a: std::net::SocketAddr,
    ) -> BoxFut<'a, std::io::Result<Arc<dyn AsyncTcpStream>>> {
        self.inner.connect_tcp(a)
    }
    fn resolve_host<'a>(
        &'a self,
        h: &'a str,
    ) -> BoxFut<'a, std::io::Result<Vec<std::net::SocketAddr>>> {
        self.inner.resolve_host(h)
    }
    fn sleep(&self, d: Duration) -> BoxFut<'static, ()> {
        self.inner.sleep(d)
    }
    fn interval(&self, p: Duration) -> Box<dyn AsyncInterval> {
        self.inner.interval(p)
    }
    fn block_on(&self, f: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + '_>>) {
        self.inner.block_on(f)
    }
}

struct Handler {
    stats: Arc<ServerStats>,
    gathered: Arc<Notify>,
    max_chunk: usize,
    was_connected: Mutex<bool>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            self.gathered.notify_one();
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let mut was = self.was_connected.lock().unwrap();
        match state {
            RTCPeerConnectionState::Connected if !*was => {
                *was = true;
                self.stats.connected.fetch_add(1, Relaxed);
            }
            RTCPeerConnectionState::Failed
            | RTCPeerConnectionState::Closed
            | RTCPeerConnectionState::Disconnected
                if *was =>
            {
                *was = false;
                self.stats.connected.fetch_sub(1, Relaxed);
                self.stats.disconnected.fetch_add(1, Relaxed);
            }
            _ => {}
        }
    }

    async fn on_data_channel(&self, dc: Arc<dyn DataChannel>) {
        // Must not block here: the driver waits for this callback to return.
        let stats = self.stats.clone();
        let max_chunk = self.max_chunk;
        tokio::spawn(async move {
            let mut reasm = Reassembler::new(max_chunk);
            let mut open = false;
            while let Some(ev) = dc.poll().await {
                match ev {
                    DataChannelEvent::OnOpen => {
                        open = true;
                        stats.channels_open.fetch_add(1, Relaxed);
                    }
                    DataChannelEvent::OnMessage(m) => {
                        stats.messages.fetch_add(1, Relaxed);
                        stats.bytes.fetch_add(m.data.len() as u64, Relaxed);
                        match reasm.push(&m.data) {
                            Ok(None) => {}
                            Ok(Some(ack)) => {
                                let c = if ack.ok {
                                    &stats.chunks_ok
                                } else {
                                    &stats.chunks_corrupt
                                };
                                c.fetch_add(1, Relaxed);
                                // Bounded by with_data_channel_send_buffer_limit: awaits room.
                                if let Err(e) = dc.send(BytesMut::from(&ack.encode()[..])).await {
                                    eprintln!("ack send: {e}");
                                    stats.send_errors.fetch_add(1, Relaxed);
                                }
                            }
                            Err(e) => {
                                eprintln!("protocol error: {e}");
                                stats.protocol_errors.fetch_add(1, Relaxed);
                                let _ = dc.close().await;
                                break;
                            }
                        }
                    }
                    DataChannelEvent::OnClose => break,
                    _ => {}
                }
            }
            if open {
                stats.channels_open.fetch_sub(1, Relaxed);
            }
        });
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::from_env();
    let http_addr = args.get("http").unwrap_or("127.0.0.1:8002").to_string();
    let ip = args.get("ip").unwrap_or("127.0.0.1").to_string();
    let lite = args.flag("lite");
    let max_chunk: usize = args.val("max-chunk", 8 << 20);
    let workers: usize = args.val("workers", 2);
    let runtime: Arc<dyn Runtime> = Arc::new(BigBufRuntime {
        inner: TokioRuntime,
        buf: args.val("udp-buf", 4 << 20),
    });

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()?;
    let handle = rt.handle().clone();
    let stats = Arc::new(ServerStats::default());
    // Keep every PeerConnection alive (dropping one closes it).
    let pcs: Arc<Mutex<Vec<Arc<dyn PeerConnection>>>> = Arc::default();

    let st = stats.clone();
    let ip2 = ip.clone();
    let handler: http::Handler =
        Arc::new(
            move |req: Request| match (req.method.as_str(), req.path.as_str()) {
                ("POST", "/offer") => {
                    let sdp = String::from_utf8_lossy(&req.body).to_string();
                    let (st, pcs, ip, rt) = (st.clone(), pcs.clone(), ip2.clone(), runtime.clone());
                    // HTTP threads are not runtime threads, so blocking on the runtime is fine.
                    match handle.block_on(answer(sdp, st.clone(), pcs, ip, lite, max_chunk, rt)) {
                        Ok(answer) => {
                            st.offers.fetch_add(1, Relaxed);
                            (201, answer)
                        }
                        Err(e) => (400, format!("{e:#}\n")),
                    }
                }
                ("GET", "/stats") => (200, st.line() + "\n"),
                _ => (404, "not found\n".into()),
            },
        );
    let listener = TcpListener::bind(&http_addr)?;
    println!("webrtc-server: http {http_addr}, one UDP socket per peer on {ip}, lite={lite}");
    rt.block_on(async move {
        tokio::task::spawn_blocking(move || http::serve(listener, handler)).await
    })?;
    Ok(())
}

async fn answer(
    offer: String,
    stats: Arc<ServerStats>,
    pcs: Arc<Mutex<Vec<Arc<dyn PeerConnection>>>>,
    ip: String,
    lite: bool,
    max_chunk: usize,
    runtime: Arc<dyn Runtime>,
) -> anyhow::Result<String> {
    let gathered = Arc::new(Notify::new());
    let setting = SettingEngineBuilder::new()
        .with_include_loopback_candidate(true) // loopback test; off by default
        .with_multicast_dns_mode(MulticastDnsMode::Disabled)
        .with_lite(lite)
        .build();
    let pc = PeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_setting_engine(setting)
        .with_handler(Arc::new(Handler {
            stats,
            gathered: gathered.clone(),
            max_chunk,
            was_connected: Mutex::new(false),
        }))
        .with_runtime(runtime)
        .with_udp_addrs(vec![format!("{ip}:0")])
        .with_data_channel_send_buffer_limit(1 << 20)
        .build()
        .await?;
    pc.set_remote_description(RTCSessionDescription::offer(offer)?)
        .await?;
    let answer = pc.create_answer(None).await?;
    pc.set_local_description(answer).await?;
    // No trickle: wait for gathering so the answer carries the host candidate.
    let _ = tokio::time::timeout(Duration::from_secs(5), gathered.notified()).await;
    let sdp = pc
        .local_description()
        .await
        .ok_or_else(|| anyhow::anyhow!("no local description"))?
        .sdp;
    pcs.lock().unwrap().push(Arc::new(pc));
    Ok(sdp)
}
