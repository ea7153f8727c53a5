//! The agent's side of the agent API. TLS is always verified (system roots, plus an
//! optional CA file); there is deliberately no switch to turn verification off. Plain
//! HTTP is accepted only for a loopback server.

use anyhow::Context;
use protocol::api::*;
use reqwest::Url;
use std::path::Path;
use std::time::Duration;
use uuid::Uuid;

#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: Url,
    token: String,
}

/// Why a call did not succeed: the server's answer (status, stable code, message and
/// `Retry-After`), or no answer at all (status 0). What to do about it is
/// `refusal::decide`'s business.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub status: u16,
    pub code: String,
    pub message: String,
    pub retry_after: Option<Duration>,
}

impl Failure {
    fn network(why: String) -> Self {
        Self {
            status: 0,
            code: "network".into(),
            message: why,
            retry_after: None,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status {
            0 => write!(f, "{}: {}", self.code, self.message),
            s => write!(f, "HTTP {s} {}: {}", self.code, self.message),
        }
    }
}

pub type Outcome<T> = Result<T, Failure>;

/// A server on this computer (the demo, the tests).
pub fn is_loopback(u: &Url) -> bool {
    match u.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

pub fn check_server_url(url: &str) -> anyhow::Result<Url> {
    let u = Url::parse(url).with_context(|| format!("invalid server URL {url:?}"))?;
    match u.scheme() {
        "https" => Ok(u),
        "http" => {
            anyhow::ensure!(
                is_loopback(&u),
                "plain http is only allowed for a loopback server; use https"
            );
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
            // The server keeps the version and the system as the stream's connection data.
            .user_agent(format!(
                "cloe-capture-agent/{} ({} {})",
                env!("CARGO_PKG_VERSION"),
                std::env::consts::OS,
                std::env::consts::ARCH
            ))
            // A redirect could lead a loopback-only plain-HTTP session anywhere: never follow.
            .redirect(reqwest::redirect::Policy::none())
            // The server closes a connection idle for `header_read_timeout` (10 s by
            // default): drop ours first, so a request is not sent on a socket being closed.
            .pool_idle_timeout(POOL_IDLE)
            .retry(unanswered_requests_again(&base));
        if let Some(ca) = ca_file {
            let pem =
                std::fs::read(ca).with_context(|| format!("reading CA file {}", ca.display()))?;
            b = b.add_root_certificate(
                reqwest::Certificate::from_pem(&pem).context("CA file is not a PEM certificate")?,
            );
        }
        Ok(Self {
            http: b.build()?,
            base,
            token,
        })
    }

    fn url(&self, path: &str) -> Url {
        self.base
            .join(path)
            .expect("static API paths join onto a valid base")
    }

    async fn send<T: serde::de::DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
        empty: Option<T>,
    ) -> Outcome<T> {
        let resp = match req.bearer_auth(&self.token).send().await {
            Ok(r) => r,
            // An untrusted certificate will not fix itself: retrying would hide it.
            Err(e) if is_certificate_error(&e) => {
                return Err(Failure {
                    status: 0,
                    code: "untrusted_certificate".into(),
                    message: format!(
                        "the server's TLS certificate is not trusted ({})",
                        root_cause(&e)
                    ),
                    retry_after: None,
                })
            }
            Err(e) => return Err(Failure::network(without_url(e))),
        };
        let status = resp.status();
        if status.is_success() {
            if let Some(v) = empty {
                return Ok(v);
            }
            return resp
                .json::<T>()
                .await
                .map_err(|e| Failure::network(without_url(e)));
        }
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|s| Duration::from_secs(s.min(3600)));
        let (code, message) = match resp.json::<ErrorBody>().await {
            Ok(b) => (b.error, b.message),
            Err(_) => (
                format!("http_{}", status.as_u16()),
                status.canonical_reason().unwrap_or_default().to_owned(),
            ),
        };
        Err(Failure {
            status: status.as_u16(),
            code,
            message,
            retry_after,
        })
    }

    /// Records consent as it was given, possibly long before (sealed in the spool).
    pub async fn consent(&self, notice_version: &str, sealed: &[u8]) -> Outcome<()> {
        use base64::Engine;
        let sealed = Some(base64::engine::general_purpose::STANDARD.encode(sealed));
        let req = self
            .http
            .post(self.url("api/agent/v1/consent"))
            .json(&ConsentRequest {
                notice_version: notice_version.into(),
                sealed,
            });
        self.send(req, Some(())).await
    }

    /// The notice as the server words it (no token needed).
    pub async fn notice(&self) -> Outcome<protocol::notice::Notice> {
        self.send(
            self.http
                .get(self.url("api/agent/v1/notice"))
                .timeout(Duration::from_secs(5)),
            None,
        )
        .await
    }

    /// Trades a short launch code for the attempt's launch token (no token needed).
    pub async fn redeem_code(&self, code: &str) -> Outcome<AddCandidateResponse> {
        let req = self
            .http
            .post(self.url("api/agent/v1/launch-code"))
            .timeout(Duration::from_secs(15))
            .json(&RedeemCodeRequest { code: code.into() });
        self.send(req, None).await
    }

    pub async fn refuse(&self, notice_version: &str) -> Outcome<serde_json::Value> {
        let req = self
            .http
            .post(self.url("api/agent/v1/refuse"))
            .json(&RefusalRequest {
                notice_version: notice_version.into(),
            });
        self.send(req, None).await
    }

    pub async fn withdraw(&self) -> Outcome<serde_json::Value> {
        self.send(self.http.post(self.url("api/agent/v1/withdraw")), None)
            .await
    }

    /// Sends `bytes` of noise; the uplink in kbit/s, from the client's clock (the time
    /// until the server has counted it all).
    pub async fn upload_test(&self, bytes: usize) -> Outcome<u64> {
        let mut body = vec![0u8; bytes];
        rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut body);
        let started = std::time::Instant::now();
        let req = self
            .http
            .post(self.url("api/agent/v1/upload-test"))
            .timeout(Duration::from_secs(30))
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(body);
        let r: UploadTestResult = self.send(req, None).await?;
        let us = started.elapsed().as_micros().max(1) as u64;
        Ok(r.bytes * 8 * 1000 / us)
    }

    /// The server's address (for the route to it; the data channel's own address comes in
    /// the SDP answer).
    pub async fn server_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        let host = self
            .base
            .host_str()
            .unwrap_or("localhost")
            .trim_matches(|c| c == '[' || c == ']')
            .to_owned();
        let port = self.base.port_or_known_default().unwrap_or(443);
        tokio::net::lookup_host((host, port))
            .await?
            .next()
            .ok_or_else(|| std::io::Error::other("the server's name resolves to nothing"))
    }

    /// WHIP-style signalling: posts the SDP offer; returns the answer and the session's
    /// path (for `webrtc_close`).
    pub async fn webrtc_offer(&self, offer: &str) -> Outcome<(String, Option<String>)> {
        let req = self
            .http
            .post(self.url("api/agent/v1/webrtc"))
            .timeout(Duration::from_secs(10))
            .header(reqwest::header::CONTENT_TYPE, "application/sdp")
            .body(offer.to_owned())
            .bearer_auth(&self.token);
        let resp = req
            .send()
            .await
            .map_err(|e| Failure::network(without_url(e)))?;
        if !resp.status().is_success() {
            let status = resp.status().as_u16();
            let body: Option<ErrorBody> = resp.json().await.ok();
            return Err(Failure {
                status,
                code: body
                    .as_ref()
                    .map_or_else(|| format!("http_{status}"), |b| b.error.clone()),
                message: body.map(|b| b.message).unwrap_or_default(),
                retry_after: None,
            });
        }
        let session = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let answer = resp
            .text()
            .await
            .map_err(|e| Failure::network(without_url(e)))?;
        Ok((answer, session))
    }

    pub async fn webrtc_close(&self, session: &str) -> Outcome<()> {
        let path = session.trim_start_matches('/');
        self.send(
            self.http
                .delete(self.url(path))
                .timeout(Duration::from_secs(5)),
            Some(()),
        )
        .await
    }

    /// A sign of life with the backlog; short, so that heartbeats never pile up.
    pub async fn heartbeat(&self, beat: &Heartbeat) -> Outcome<()> {
        let req = self
            .http
            .post(self.url("api/agent/v1/heartbeat"))
            .timeout(Duration::from_secs(5))
            .json(beat);
        self.send(req, Some(())).await
    }

    /// What a token issued before store-and-forward does not carry.
    pub async fn attempt_info(&self) -> Outcome<AttemptInfo> {
        self.send(self.http.get(self.url("api/agent/v1/attempt")), None)
            .await
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
        let req = self
            .http
            .post(self.url(&format!("api/agent/v1/streams/{stream}/end")))
            .json(&EndStreamRequest { final_index });
        self.send(req, Some(())).await
    }
}

/// How long an idle connection is kept for the next request: under the server's 10 s.
const POOL_IDLE: Duration = Duration::from_secs(5);

/// Sends again, at once and once, an idempotent request (a chunk PUT, a GET) that a
/// connection closing under it left without any answer. Everything else goes back to the
/// caller (the uploader's spool and its backoff).
fn unanswered_requests_again(base: &Url) -> reqwest::retry::Builder {
    reqwest::retry::for_host(base.host_str().unwrap_or_default().to_owned())
        .max_retries_per_request(1)
        .classify_fn(|r| {
            let idempotent = [reqwest::Method::PUT, reqwest::Method::GET].contains(r.method());
            if idempotent && r.error().is_some_and(never_answered) {
                r.retryable()
            } else {
                r.success()
            }
        })
}

/// The connection closed before a response began (hyper's "incomplete message"), or the
/// request was cancelled because its pooled connection was already gone.
fn never_answered(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(e) = cause {
        if e.downcast_ref::<hyper::Error>()
            .is_some_and(|h| h.is_incomplete_message() || h.is_canceled())
        {
            return true;
        }
        cause = e.source();
    }
    false
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
        if e.downcast_ref::<rustls::Error>()
            .is_some_and(|r| matches!(r, rustls::Error::InvalidCertificate(_)))
        {
            return true;
        }
        let wrapped = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref());
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
    use super::*;
    use std::io::{Read, Write};

    /// Defect: the client followed redirects, which walks around the loopback-only rule.
    #[tokio::test]
    async fn redirects_are_never_followed() {
        let target = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        target.set_nonblocking(true).unwrap();
        let redirector = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let location = format!(
            "http://{}/api/agent/v1/consent",
            target.local_addr().unwrap()
        );
        let base = format!("http://{}/", redirector.local_addr().unwrap());
        let serve = std::thread::spawn(move || {
            let (mut c, _) = redirector.accept().unwrap();
            let mut buf = [0u8; 4096];
            let _ = c.read(&mut buf);
            let _ = write!(c, "HTTP/1.1 307 Temporary Redirect\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        });
        let api = Api::new(Url::parse(&base).unwrap(), "clt_x".into(), None).unwrap();
        let failure = api.consent("v", b"sealed").await.unwrap_err();
        serve.join().unwrap();
        assert_eq!(failure.status, 307);
        assert_eq!(
            crate::refusal::decide(&failure),
            crate::refusal::Decision::Stop(crate::refusal::StopReason::Redirected)
        );
        assert!(
            target.accept().is_err(),
            "the redirect target was contacted"
        );
    }

    /// Reads one request whole (headers and `Content-Length` body); returns its first line.
    fn read_request(c: &mut std::net::TcpStream) -> String {
        let mut got = Vec::new();
        let mut buf = [0u8; 65536];
        loop {
            let n = c.read(&mut buf).unwrap();
            assert!(n > 0, "connection closed mid-request");
            got.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&got).into_owned();
            if let Some(end) = text.find("\r\n\r\n") {
                let len: usize = text[..end]
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap_or(0);
                if got.len() >= end + 4 + len {
                    return text.lines().next().unwrap().to_owned();
                }
            }
        }
    }

    /// Defect (issue 22): a connection the server closed as a request went out (its idle
    /// timeout) failed the upload. A PUT left without any answer is sent again, once; a
    /// POST is not (it is not idempotent): it fails back to the caller's own retry.
    #[tokio::test]
    async fn a_put_left_unanswered_by_a_closing_connection_is_sent_again() {
        let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = Url::parse(&format!("http://{}/", server.local_addr().unwrap())).unwrap();
        let serve = std::thread::spawn(move || {
            let mut seen = Vec::new();
            // The PUT: closed unanswered, then answered on a new connection.
            let (mut c, _) = server.accept().unwrap();
            seen.push(read_request(&mut c));
            drop(c);
            let (mut c, _) = server.accept().unwrap();
            seen.push(read_request(&mut c));
            let body = r#"{"stream_id":"00000000-0000-0000-0000-000000000001","index":3,"digest":"d","created":true}"#;
            write!(c, "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
            drop(c);
            // The POST: closed unanswered, and no second one may come.
            let (mut c, _) = server.accept().unwrap();
            seen.push(read_request(&mut c));
            drop(c);
            server.set_nonblocking(true).unwrap();
            std::thread::sleep(Duration::from_millis(300));
            assert!(server.accept().is_err(), "a POST was sent twice");
            seen
        });
        let api = Api::new(base, "clt_x".into(), None).unwrap();
        let ack = api
            .put_chunk(Uuid::from_u128(1), 3, vec![7; 100_000])
            .await
            .expect("the PUT is sent again and answered");
        assert_eq!((ack.index, ack.created), (3, true));
        let failure = api.heartbeat(&Heartbeat::default()).await.unwrap_err();
        assert_eq!(failure.code, "network");
        let seen = serve.join().unwrap();
        assert!(
            seen[0].starts_with("PUT ") && seen[1] == seen[0],
            "{seen:?}"
        );
        assert!(seen[2].starts_with("POST "), "{seen:?}");
    }

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
