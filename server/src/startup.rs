//! Builds the application (both listeners bound, port 0 allowed) and runs it until stopped.

use crate::clock::SharedClock;
use crate::configuration::Settings;
use crate::routes::{public_router, staff_router, AppState};
use anyhow::Context;
use axum::Router;
use futures::FutureExt;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

struct RunSettings {
    header_timeout: Duration,
    max_peers: usize,
    max_chunk_bytes: u64,
}

pub struct Application {
    state: AppState,
    /// What running needs from the settings once the state is built.
    run: RunSettings,
    public: TcpListener,
    staff: TcpListener,
    tls: Option<axum_server::tls_rustls::RustlsConfig>,
    /// The staff listener's TLS when it requires terminal certificates.
    staff_terminal_tls: Option<(
        axum_server::tls_rustls::RustlsConfig,
        Arc<crate::terminals::Revocations>,
    )>,
    /// The data channel transport's UDP socket, and the address agents are told.
    udp: Option<(std::net::UdpSocket, SocketAddr)>,
}

/// Plain HTTP only on loopback: anything reachable from outside needs TLS unless the
/// operator says otherwise (e.g. TLS terminated by a proxy on the same host).
fn check_exposure(
    addr: SocketAddr,
    tls: bool,
    allow_insecure: bool,
    what: &str,
) -> anyhow::Result<()> {
    if !addr.ip().is_loopback() && !tls && !allow_insecure {
        anyhow::bail!(
            "refusing to listen on {what} address {addr} without TLS: set [tls] cert_path/key_path, \
             or server.allow_insecure_public = true if TLS is terminated in front of this server"
        );
    }
    Ok(())
}

impl Application {
    pub async fn build(settings: Settings, clock: SharedClock) -> anyhow::Result<Self> {
        let tls_on = settings.tls.is_some();
        check_exposure(
            settings.server.listen,
            tls_on,
            settings.server.allow_insecure_public,
            "public",
        )?;
        check_exposure(
            settings.server.staff_listen,
            tls_on,
            settings.server.allow_insecure_public,
            "staff",
        )?;
        let tls = match &settings.tls {
            Some(t) => {
                let _ = rustls::crypto::ring::default_provider().install_default();
                let loaded =
                    axum_server::tls_rustls::RustlsConfig::from_pem_file(&t.cert_path, &t.key_path)
                        .await
                        .with_context(|| {
                            format!("loading TLS certificate {}", t.cert_path.display())
                        })?;
                // The listeners speak HTTP/1.1 only (see `serve`): do not offer h2.
                let mut cfg = (*loaded.get_inner()).clone();
                cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
                Some(axum_server::tls_rustls::RustlsConfig::from_config(
                    Arc::new(cfg),
                ))
            }
            None => None,
        };
        let staff_terminal_tls = match &settings.tls {
            Some(t) if t.require_terminal => {
                let ca = t
                    .terminal_ca_path
                    .clone()
                    .unwrap_or_else(|| settings.server.key_dir().join(crate::terminals::CA_CERT));
                if !ca.exists() {
                    anyhow::bail!("require_terminal is set but the terminal CA {} does not exist: issue a terminal first (proctor-server terminal issue --name NAME)", ca.display());
                }
                let revoked = Arc::new(crate::terminals::Revocations::new(
                    &settings.server.key_dir(),
                ));
                let cfg = crate::terminals::server_config(
                    &t.cert_path,
                    &t.key_path,
                    &ca,
                    revoked.clone(),
                )?;
                Some((
                    axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(cfg)),
                    revoked,
                ))
            }
            _ => None,
        };
        let public = TcpListener::bind(settings.server.listen)
            .with_context(|| format!("binding {}", settings.server.listen))?;
        let staff = TcpListener::bind(settings.server.staff_listen)
            .with_context(|| format!("binding {}", settings.server.staff_listen))?;
        public.set_nonblocking(true)?;
        staff.set_nonblocking(true)?;
        let udp = match settings.webrtc.enabled {
            true => {
                let socket =
                    crate::webrtc::bind(settings.webrtc.listen.unwrap_or(settings.server.listen))?;
                let bound = socket.local_addr()?;
                let announce = match settings.webrtc.announce.as_deref() {
                    Some(a) => match (a.parse::<SocketAddr>(), a.parse::<std::net::IpAddr>()) {
                        (Ok(full), _) => full,
                        (_, Ok(ip)) => SocketAddr::new(ip, bound.port()),
                        _ => anyhow::bail!("[webrtc] announce {a:?} is neither an IP address nor IP:PORT"),
                    },
                    None if bound.ip().is_unspecified() => anyhow::bail!("[webrtc] listens on every interface ({bound}): set [webrtc] announce to the address agents reach"),
                    None => bound,
                };
                Some((socket, announce))
            }
            false => None,
        };
        crate::metrics::handle();
        // Links handed out (the browser agent's) name the port actually bound, port 0 included.
        let mut settings = settings;
        settings.server.listen = public.local_addr()?;
        let run = RunSettings {
            header_timeout: settings.limits.header_read_timeout,
            max_peers: settings.webrtc.max_peers,
            max_chunk_bytes: settings.limits.max_chunk_bytes,
        };
        let state = AppState::open(settings, clock).await?;
        Ok(Self {
            state,
            run,
            public,
            staff,
            tls,
            staff_terminal_tls,
            udp,
        })
    }

    /// Where agents send their data channel's datagrams (None: the transport is off).
    pub fn webrtc_addr(&self) -> Option<SocketAddr> {
        self.udp.as_ref().map(|(_, a)| *a)
    }

    pub fn public_addr(&self) -> SocketAddr {
        self.public.local_addr().expect("bound listener")
    }

    pub fn staff_addr(&self) -> SocketAddr {
        self.staff.local_addr().expect("bound listener")
    }

    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    fn webrtc_agents(&self) -> crate::webrtc::Agents {
        crate::webrtc::Agents {
            ingest: self.state.ingest.clone(),
            liveness: self.state.liveness.clone(),
            max_peers: self.run.max_peers,
            max_chunk_bytes: self.run.max_chunk_bytes,
        }
    }

    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let header_timeout = self.run.header_timeout;
        let _worker = crate::retention::spawn_worker(self.state.retention.clone());
        let _liveness = crate::liveness::spawn_watch(self.state.liveness.clone());
        let _packer = crate::packing::spawn(self.state.packer.clone());
        let agents = self.webrtc_agents();
        let webrtc = match self.udp {
            Some((socket, announce)) => Some(Arc::new(crate::webrtc::WebRtc::start(
                agents, socket, announce,
            )?)),
            None => None,
        };
        let state = AppState {
            webrtc,
            ..self.state
        };
        let public = serve(
            self.public,
            public_router(state.clone()),
            self.tls.clone(),
            header_timeout,
        );
        let staff = match self.staff_terminal_tls {
            Some((cfg, revoked)) => {
                let router = staff_router(state).layer(axum::middleware::from_fn(
                    move |req: axum::extract::Request, next: axum::middleware::Next| {
                        let revoked = revoked.clone();
                        async move {
                            // A connection opened before its terminal was revoked.
                            let terminal =
                                req.extensions().get::<Option<crate::terminals::Terminal>>();
                            if terminal
                                .cloned()
                                .flatten()
                                .is_none_or(|t| revoked.is_revoked(&t.name))
                            {
                                return axum::response::IntoResponse::into_response(
                                    crate::routes::error::AppError::TerminalRevoked,
                                );
                            }
                            next.run(req).await
                        }
                    },
                ));
                serve_terminals(self.staff, router, cfg, header_timeout).boxed()
            }
            None => serve(self.staff, staff_router(state), self.tls, header_timeout).boxed(),
        };
        tokio::select! {
            r = public => r,
            r = staff => r,
            _ = shutdown_signal() => {
                tracing::info!("shutting down");
                Ok(())
            }
        }
    }
}

/// HTTP/1.1 only: the agent uploads one chunk at a time and needs no multiplexing, and
/// the protocol sniffing of a dual-stack server reads the first bytes with no deadline
/// (a slow-loris door). Headers must arrive within `header_timeout`; a TLS handshake
/// within axum-server's 10 s.
fn configure<A>(server: &mut axum_server::Server<A>, header_timeout: Duration) {
    let builder = std::mem::replace(server.http_builder(), Builder::new(TokioExecutor::new()));
    *server.http_builder() = builder.http1_only();
    server
        .http_builder()
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(64 * 1024);
}

async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<axum_server::tls_rustls::RustlsConfig>,
    header_timeout: Duration,
) -> anyhow::Result<()> {
    let svc = router.into_make_service_with_connect_info::<SocketAddr>();
    match tls {
        Some(cfg) => {
            let mut server = axum_server::from_tcp_rustls(listener, cfg);
            configure(&mut server, header_timeout);
            server.serve(svc).await?
        }
        None => {
            let mut server = axum_server::from_tcp(listener);
            configure(&mut server, header_timeout);
            server.serve(svc).await?
        }
    }
    Ok(())
}

/// The staff listener with mutual TLS: each request knows its terminal.
async fn serve_terminals(
    listener: TcpListener,
    router: Router,
    cfg: axum_server::tls_rustls::RustlsConfig,
    header_timeout: Duration,
) -> anyhow::Result<()> {
    let mut server =
        axum_server::from_tcp(listener).acceptor(crate::terminals::TerminalAcceptor::new(cfg));
    configure(&mut server, header_timeout);
    server
        .serve(router.into_make_service_with_connect_info::<SocketAddr>())
        .await?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {},
        _ = term.recv() => {},
    }
}
