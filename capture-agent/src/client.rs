//! The agent's side of the agent API. TLS is always verified (system roots, plus an
//! optional CA file); there is deliberately no switch to turn verification off. Plain
//! HTTP is accepted only for a loopback server.

use anyhow::Context;
use protocol::api::*;
use reqwest::{StatusCode, Url};
use std::path::Path;
use std::time::Duration;
use uuid::Uuid;

#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: Url,
    token: String,
}

/// How the server answered an upload or a control call.
#[derive(Debug)]
pub enum Outcome<T> {
    Done(T),
    /// The server refused for good (4xx): retrying the same request cannot succeed.
    Refused { status: u16, error: String },
    /// Network trouble or a 5xx/429: retry later.
    Retry(String),
}

pub fn check_server_url(url: &str) -> anyhow::Result<Url> {
    let u = Url::parse(url).with_context(|| format!("invalid server URL {url:?}"))?;
    match u.scheme() {
        "https" => Ok(u),
        "http" => {
            let loopback = match u.host() {
                Some(url::Host::Domain(d)) => d == "localhost",
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                None => false,
            };
            anyhow::ensure!(loopback, "plain http is only allowed for a loopback server; use https");
            Ok(u)
        }
        other => anyhow::bail!("unsupported URL scheme {other:?}"),
    }
}

impl Api {
    pub fn new(base: Url, token: String, ca_file: Option<&Path>) -> anyhow::Result<Self> {
        let mut b = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(120))
            .user_agent(concat!("cloe-capture-agent/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = ca_file {
            let pem = std::fs::read(ca).with_context(|| format!("reading CA file {}", ca.display()))?;
            b = b.add_root_certificate(reqwest::Certificate::from_pem(&pem).context("CA file is not a PEM certificate")?);
        }
        Ok(Self { http: b.build()?, base, token })
    }

    fn url(&self, path: &str) -> Url {
        self.base.join(path).expect("static API paths join onto a valid base")
    }

    async fn send<T: serde::de::DeserializeOwned>(&self, req: reqwest::RequestBuilder, empty: Option<T>) -> Outcome<T> {
        let resp = match req.bearer_auth(&self.token).send().await {
            Ok(r) => r,
            // An untrusted certificate will not fix itself: retrying would hide it.
            Err(e) if is_certificate_error(&e) => {
                return Outcome::Refused { status: 0, error: format!("the server's TLS certificate is not trusted ({})", root_cause(&e)) }
            }
            Err(e) => return Outcome::Retry(without_url(e)),
        };
        let status = resp.status();
        if status.is_success() {
            if let Some(v) = empty {
                return Outcome::Done(v);
            }
            return match resp.json::<T>().await {
                Ok(v) => Outcome::Done(v),
                Err(e) => Outcome::Retry(without_url(e)),
            };
        }
        let body = resp.json::<ErrorBody>().await.map(|b| format!("{}: {}", b.error, b.message)).unwrap_or_default();
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::REQUEST_TIMEOUT {
            Outcome::Retry(format!("HTTP {status} {body}"))
        } else {
            Outcome::Refused { status: status.as_u16(), error: body }
        }
    }

    pub async fn consent(&self) -> Outcome<()> {
        let req = self.http.post(self.url("api/agent/v1/consent")).json(&ConsentRequest { notice_version: NOTICE_VERSION.into() });
        self.send(req, Some(())).await
    }

    pub async fn open_stream(&self) -> Outcome<OpenStreamResponse> {
        let req = self.http.post(self.url("api/agent/v1/streams")).json(&OpenStreamRequest {
            agent_version: env!("CARGO_PKG_VERSION").into(),
            os: format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
        });
        self.send(req, None).await
    }

    pub async fn put_chunk(&self, stream: Uuid, index: u32, chunk: Vec<u8>) -> Outcome<ChunkAck> {
        let req = self
            .http
            .put(self.url(&format!("api/agent/v1/streams/{stream}/chunks/{index}")))
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(chunk);
        self.send(req, None).await
    }

    pub async fn end_stream(&self, stream: Uuid, final_index: u32) -> Outcome<()> {
        let req = self.http.post(self.url(&format!("api/agent/v1/streams/{stream}/end"))).json(&EndStreamRequest { final_index });
        self.send(req, Some(())).await
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

fn is_certificate_error(e: &reqwest::Error) -> bool {
    // rustls errors arrive wrapped in (sometimes nested) io::Errors, whose `source()` skips
    // the wrapped error itself: look through both.
    fn walk(e: &(dyn std::error::Error + 'static)) -> bool {
        if e.downcast_ref::<rustls::Error>().is_some_and(|r| matches!(r, rustls::Error::InvalidCertificate(_))) {
            return true;
        }
        let wrapped = e.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref());
        wrapped.is_some_and(|w| walk(w)) || e.source().is_some_and(walk)
    }
    walk(e)
}

/// reqwest errors print the URL; ours carry no secret, but keep messages short and stable.
fn without_url(e: reqwest::Error) -> String {
    e.without_url().to_string()
}

#[cfg(test)]
mod tests {
    use super::check_server_url;

    #[test]
    fn plain_http_only_for_loopback() {
        assert!(check_server_url("https://proctor.example.fr").is_ok());
        assert!(check_server_url("http://127.0.0.1:8443").is_ok());
        assert!(check_server_url("http://[::1]:8443").is_ok());
        assert!(check_server_url("http://localhost:8443").is_ok());
        assert!(check_server_url("http://proctor.example.fr").is_err());
        assert!(check_server_url("http://192.0.2.7:8443").is_err());
        assert!(check_server_url("ftp://127.0.0.1").is_err());
    }
}
