//! Builds the application (both listeners bound, port 0 allowed) and runs it until stopped.

use crate::clock::SharedClock;
use crate::configuration::Settings;
use crate::routes::{public_router, staff_router};
use crate::service::Proctor;
use anyhow::Context;
use axum::Router;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

pub struct Application {
    proctor: Arc<Proctor>,
    public: TcpListener,
    staff: TcpListener,
    tls: Option<axum_server::tls_rustls::RustlsConfig>,
}

/// Plain HTTP only on loopback: anything reachable from outside needs TLS unless the
/// operator says otherwise (e.g. TLS terminated by a proxy on the same host).
fn check_exposure(addr: SocketAddr, tls: bool, allow_insecure: bool, what: &str) -> anyhow::Result<()> {
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
        check_exposure(settings.server.listen, tls_on, settings.server.allow_insecure_public, "public")?;
        check_exposure(settings.server.staff_listen, tls_on, settings.server.allow_insecure_public, "staff")?;
        let tls = match &settings.tls {
            Some(t) => {
                let _ = rustls::crypto::ring::default_provider().install_default();
                Some(
                    axum_server::tls_rustls::RustlsConfig::from_pem_file(&t.cert_path, &t.key_path)
                        .await
                        .with_context(|| format!("loading TLS certificate {}", t.cert_path.display()))?,
                )
            }
            None => None,
        };
        let public = TcpListener::bind(settings.server.listen).with_context(|| format!("binding {}", settings.server.listen))?;
        let staff = TcpListener::bind(settings.server.staff_listen).with_context(|| format!("binding {}", settings.server.staff_listen))?;
        public.set_nonblocking(true)?;
        staff.set_nonblocking(true)?;
        let proctor = Arc::new(Proctor::open(settings, clock)?);
        Ok(Self { proctor, public, staff, tls })
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

    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let public = serve(self.public, public_router(self.proctor.clone()), self.tls.clone());
        let staff = serve(self.staff, staff_router(self.proctor.clone()), self.tls);
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

async fn serve(listener: TcpListener, router: Router, tls: Option<axum_server::tls_rustls::RustlsConfig>) -> anyhow::Result<()> {
    let svc = router.into_make_service_with_connect_info::<SocketAddr>();
    match tls {
        Some(cfg) => axum_server::from_tcp_rustls(listener, cfg).serve(svc).await?,
        None => axum::serve(tokio::net::TcpListener::from_std(listener)?, svc).await?,
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {},
        _ = term.recv() => {},
    }
}
