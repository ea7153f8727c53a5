//! Layered settings: embedded defaults ← optional file ← PROCTOR_* environment ← CLI flags.

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

const EMBEDDED_DEFAULTS: &str = include_str!("../../config/default.toml");

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub server: ServerSettings,
    pub limits: LimitSettings,
    pub capture: CaptureSettings,
    pub review: ReviewSettings,
    pub retention: RetentionSettings,
    #[serde(default)]
    pub keys: KeySettings,
    pub liveness: LivenessSettings,
    pub webrtc: WebRtcSettings,
    #[serde(default)]
    pub notice: NoticeSettings,
    #[serde(default)]
    pub tls: Option<TlsSettings>,
    #[serde(default)]
    pub integration: IntegrationSettings,
    pub database: DatabaseSettings,
    #[serde(default)]
    pub object_store: crate::blobs::ObjectStoreSettings,
    pub packing: PackingSettings,
}

impl Settings {
    /// Where candidates reach the public listener: `[server] public_url`, or the listen
    /// address itself (what a demo and the tests use).
    pub fn public_base(&self) -> String {
        match &self.server.public_url {
            Some(u) => u.trim_end_matches('/').to_owned(),
            None => format!(
                "{}://{}",
                if self.tls.is_some() { "https" } else { "http" },
                self.server.listen
            ),
        }
    }
}

/// `url` unset: SQLite in `data_dir/proctor.sqlite`. Otherwise `sqlite://PATH` or
/// `postgres://USER:PASSWORD@HOST/DB` (the password never shows in `Debug`).
#[derive(Clone, Deserialize)]
pub struct DatabaseSettings {
    #[serde(default)]
    pub url: Option<String>,
    pub max_connections: u32,
    #[serde(with = "humantime_serde_compat")]
    pub acquire_timeout: Duration,
    #[serde(with = "humantime_serde_compat")]
    pub statement_timeout: Duration,
    pub connect_retries: u32,
}

impl DatabaseSettings {
    pub fn pool(&self) -> crate::db::PoolSettings {
        crate::db::PoolSettings {
            max_connections: self.max_connections,
            acquire_timeout: self.acquire_timeout,
            statement_timeout: self.statement_timeout,
            connect_retries: self.connect_retries,
        }
    }
}

impl std::fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let url = self
            .url
            .as_deref()
            .map(|u| match (u.find("://"), u.rfind('@')) {
                (Some(s), Some(at)) if at > s => format!("{}://<redacted>{}", &u[..s], &u[at..]),
                _ => u.to_owned(),
            });
        f.debug_struct("DatabaseSettings")
            .field("url", &url)
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("statement_timeout", &self.statement_timeout)
            .field("connect_retries", &self.connect_retries)
            .finish()
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub staff_listen: SocketAddr,
    pub data_dir: PathBuf,
    /// Key-encryption keys: unset, `data_dir/keys` (embedded use). In production a volume
    /// of its own, outside every database and bucket backup.
    #[serde(default)]
    pub key_dir: Option<PathBuf>,
    /// Production: refuse set-ups that are fine for a demo but not for candidates' data.
    #[serde(default)]
    pub production: bool,
    pub allow_insecure_public: bool,
    /// `--now` is accepted only when this is true and `production` is not.
    #[serde(default)]
    pub allow_clock_override: bool,
    /// The public listener's address as candidates reach it (`https://exam.example.fr`):
    /// browser launch links point there. Unset: `http(s)://` + `listen`.
    #[serde(default)]
    pub public_url: Option<String>,
    /// The load balancers in front of the listeners: from these peers (and only these),
    /// the client is the last address of `X-Forwarded-For` that is not one of them. Limits
    /// per address (launch codes, logins) then count candidates, not the load balancer.
    #[serde(default)]
    pub trusted_proxies: Vec<std::net::IpAddr>,
}

/// Every limit the listeners enforce; the defaults and their reasons are in
/// `config/default.toml`.
#[derive(Debug, Clone, Deserialize)]
pub struct LimitSettings {
    pub max_chunk_bytes: u64,
    /// How far back an agent may date what it did offline (consent, a stream's start).
    #[serde(with = "humantime_serde_compat")]
    pub max_offline: Duration,
    #[serde(with = "humantime_serde_compat")]
    pub launch_token_ttl: Duration,
    /// How long a short launch code (typed instead of the link) can be used, once.
    #[serde(with = "humantime_serde_compat")]
    pub launch_code_ttl: Duration,
    #[serde(with = "humantime_serde_compat")]
    pub staff_session_ttl: Duration,
    #[serde(with = "humantime_serde_compat")]
    pub staff_session_idle: Duration,
    #[serde(with = "humantime_serde_compat")]
    pub staff_password_max_age: Duration,
    #[serde(with = "humantime_serde_compat")]
    pub upload_grace: Duration,
    #[serde(with = "humantime_serde_compat")]
    pub header_read_timeout: Duration,
    #[serde(with = "humantime_serde_compat")]
    pub body_read_timeout: Duration,
    pub max_concurrent_requests: usize,
    /// Requests in progress on the routes that need no credential (launch page, notice,
    /// launch codes, the receipts' key), part of `max_concurrent_requests`, and per network.
    pub max_unauthenticated_requests: usize,
    pub max_unauthenticated_per_address: usize,
    pub max_concurrent_ingests: usize,
    pub ingest_buffer_bytes: u64,
    pub max_ingests_per_attempt: usize,
    pub max_streams_per_attempt: u64,
    pub max_chunks_per_stream: u32,
    pub quota_bitrate_multiple: u64,
    #[serde(with = "humantime_serde_compat")]
    pub index_window_margin: Duration,
    pub login_max_failures: u32,
    pub login_max_failures_per_address: u32,
    /// Wrong launch codes from every address together within `login_failure_window`,
    /// beyond which redeeming codes pauses for `login_lockout` (a guessing ceiling).
    pub launch_code_max_failures: u32,
    #[serde(with = "humantime_serde_compat")]
    pub login_failure_window: Duration,
    #[serde(with = "humantime_serde_compat")]
    pub login_lockout: Duration,
    pub argon2_concurrency: usize,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ReviewSettings {
    /// A review is due this long after its attempt ended; the queue shows overdue ones.
    #[serde(with = "humantime_serde_compat")]
    pub deadline: Duration,
    /// Media that reached the server this long after the exam's end makes the integrity
    /// verdict `late_upload` instead of `ok` (store-and-forward stays allowed; provenance
    /// is shown, never hidden).
    #[serde(with = "humantime_serde_compat")]
    pub late_upload_after: Duration,
}

/// The WebRTC data channel transport: one UDP socket for every agent.
#[derive(Debug, Clone, Deserialize)]
pub struct WebRtcSettings {
    pub enabled: bool,
    /// UDP address; unset, the public listener's address and port (one port number for
    /// both transports, TCP and UDP).
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// The address agents are told to send to, when it is not the one listened on
    /// (listening on every interface, behind NAT): "IP" (the port listened on) or "IP:PORT".
    #[serde(default)]
    pub announce: Option<String>,
    /// Connected agents at most; beyond, signalling answers 503 and agents use HTTPS.
    pub max_peers: usize,
}

/// `[packing]`: a complete stream's fragments copied into a few larger objects.
#[derive(Debug, Clone, Deserialize)]
pub struct PackingSettings {
    pub enabled: bool,
    #[serde(with = "humantime_serde_compat")]
    pub after: Duration,
    #[serde(with = "humantime_serde_compat")]
    pub incomplete_after: Duration,
    #[serde(with = "humantime_serde_compat")]
    pub loose_grace: Duration,
    #[serde(with = "humantime_serde_compat")]
    pub interval: Duration,
    pub max_pack_bytes: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LivenessSettings {
    /// After this long without a heartbeat or a chunk, an exam's agent is marked silent.
    #[serde(with = "humantime_serde_compat")]
    pub silent_after: Duration,
}

/// What the information notice names that depends on the deployment.
#[derive(Debug, Clone, Deserialize)]
pub struct NoticeSettings {
    /// Whom candidates write to about their data (the DPO's address), as it reads in the
    /// sentence "Pour exercer vos droits : …".
    pub dpo_contact: String,
}

impl Default for NoticeSettings {
    fn default() -> Self {
        Self {
            dpo_contact: protocol::notice::DEFAULT_DPO_CONTACT.into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct RetentionSettings {
    /// How long a recording no PV decision covers is kept after the exam: "2 months",
    /// "30 days"; between a day and the stated legal maximum, never off.
    #[serde(deserialize_with = "ceiling")]
    pub ceiling: crate::retention::policy::Ceiling,
    /// The retention worker runs at start-up, then this often (and at once after a PV
    /// validation); between a second and an hour, so that it cannot be switched off.
    #[serde(deserialize_with = "sweep_interval")]
    pub sweep_interval: Duration,
    /// How long one key-encryption key wraps new data keys: "1 day" (default) or "1 month".
    /// A backup taken before a destruction stays decryptable about two of these.
    pub kek_epoch: crate::keys::EpochLength,
    /// How long the audit trail keeps an entry: "12 months" (default), 1 to 120 months.
    /// Older entries leave in signed segments at the sweep (`audit verify` still proves the
    /// rest untouched).
    #[serde(rename = "audit_retention", deserialize_with = "audit_retention")]
    pub audit_retention_months: u32,
}

fn audit_retention<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let s = String::deserialize(d)?;
    let mut words = s.split_whitespace();
    match (
        words.next().and_then(|n| n.parse::<u32>().ok()),
        words.next(),
        words.next(),
    ) {
        (Some(n @ 1..=120), Some("month" | "months"), None) => Ok(n),
        _ => Err(serde::de::Error::custom(format!(
            "retention.audit_retention must be \"N months\" with N from 1 to 120, not {s:?}"
        ))),
    }
}

/// The longest wait between two sweeps: a due recording outlives its date by at most this.
pub const MAX_SWEEP_INTERVAL: Duration = Duration::from_secs(3600);

fn sweep_interval<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let every = humantime_serde_compat::deserialize(d)?;
    if every < Duration::from_secs(1) || every > MAX_SWEEP_INTERVAL {
        return Err(serde::de::Error::custom(format!(
            "retention.sweep_interval must be between 1s and 1h (a due recording waits for the next sweep), not {}",
            humantime::format_duration(every)
        )));
    }
    Ok(every)
}

fn ceiling<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<crate::retention::policy::Ceiling, D::Error> {
    let s = String::deserialize(d)?;
    crate::retention::policy::Ceiling::parse(&s).map_err(serde::de::Error::custom)
}

/// Where the key-encryption keys live (`[keys] store`): files in the key directory
/// (`"file"`, the default), or a PKCS#11 token (`"pkcs11"`: an HSM, or a cloud KMS that
/// speaks PKCS#11), where destroying a key is the token's own operation and its bytes never
/// reach this process. Chosen at installation: keys do not move from one store to another.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(tag = "store", rename_all = "lowercase")]
pub enum KeySettings {
    #[default]
    File,
    Pkcs11 {
        /// The module: `/usr/lib/softhsm/libsofthsm2.so`, a vendor's library.
        module: PathBuf,
        /// The token's label.
        token: String,
        /// A file holding the user PIN (never the PIN itself in the configuration).
        pin_file: PathBuf,
    },
}

impl KeySettings {
    /// The key store these settings name, its files (receipt key, tombstones) in `dir`.
    pub fn open(&self, dir: &std::path::Path) -> anyhow::Result<crate::keys::KeyStore> {
        use anyhow::Context;
        Ok(match self {
            Self::File => crate::keys::KeyStore::open(dir)?,
            Self::Pkcs11 {
                module,
                token,
                pin_file,
            } => {
                let pin = zeroize::Zeroizing::new(std::fs::read_to_string(pin_file).with_context(
                    || format!("reading the PKCS#11 PIN file {}", pin_file.display()),
                )?);
                let token = crate::keys::Pkcs11Keks::open(module, token, pin.trim_end())?;
                crate::keys::KeyStore::open_pkcs11(dir, token)?
            }
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct CaptureSettings {
    pub fragment_ms: u32,
    pub bitrate_kbps: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TlsSettings {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    /// The staff listener accepts only clients with a terminal certificate (mutual TLS).
    #[serde(default)]
    pub require_terminal: bool,
    /// The CA that signs terminal certificates; default: the one `terminal issue`
    /// keeps in the key directory.
    #[serde(default)]
    pub terminal_ca_path: Option<PathBuf>,
}

#[derive(Clone, Default, Deserialize)]
pub struct IntegrationSettings {
    pub token: Option<String>,
}

impl std::fmt::Debug for IntegrationSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntegrationSettings")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

mod humantime_serde_compat {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

impl ServerSettings {
    /// Whether `--now` may replace the clock: only where the configuration says so, and
    /// never in production (back-dated receipts, contested evidence destroyed early).
    pub fn check_clock_override(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.allow_clock_override && !self.production,
            "--now is refused: it rewrites the time of receipts and destructions; it runs only with server.allow_clock_override = true (PROCTOR_SERVER__ALLOW_CLOCK_OVERRIDE=true) in a configuration that is not a production one"
        );
        Ok(())
    }

    pub fn key_dir(&self) -> PathBuf {
        self.key_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("keys"))
    }

    /// What production refuses: key-encryption keys inside the data directory, where a
    /// backup of the data would carry the keys that shred it.
    pub fn check_production(&self) -> anyhow::Result<()> {
        if !self.production {
            return Ok(());
        }
        let (keys, data) = (resolved(&self.key_dir())?, resolved(&self.data_dir)?);
        anyhow::ensure!(
            !keys.starts_with(&data),
            "production: the key directory {} is inside the data directory {}; put the KEKs on a volume of their own (server.key_dir / --key-dir) that no data backup includes",
            keys.display(),
            data.display()
        );
        Ok(())
    }
}

/// The path with symbolic links resolved where it exists, and `.`/`..` folded lexically
/// where it does not yet.
fn resolved(p: &std::path::Path) -> std::io::Result<PathBuf> {
    if let Ok(c) = std::fs::canonicalize(p) {
        return Ok(c);
    }
    let mut out = PathBuf::new();
    for c in std::path::absolute(p)?.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    Ok(out)
}

/// `file`: an explicit --config file (must exist); otherwise `config/default.toml` in the
/// working directory if present; the embedded defaults always lie underneath.
pub fn load(file: Option<&std::path::Path>) -> anyhow::Result<Settings> {
    let mut fig = Figment::from(Toml::string(EMBEDDED_DEFAULTS));
    match file {
        Some(path) => {
            anyhow::ensure!(
                path.exists(),
                "configuration file {} not found",
                path.display()
            );
            fig = fig.merge(Toml::file(path));
        }
        None => fig = fig.merge(Toml::file("config/default.toml")),
    }
    let fig = fig.merge(Env::prefixed("PROCTOR_").split("__").ignore(&["password"]));
    let settings: Settings = fig.extract()?;
    // A chunk the memory budget can never admit would be refused with 503 forever.
    anyhow::ensure!(
        settings.limits.ingest_buffer_bytes >= settings.limits.max_chunk_bytes,
        "limits.ingest_buffer_bytes ({}) must be at least limits.max_chunk_bytes ({})",
        settings.limits.ingest_buffer_bytes,
        settings.limits.max_chunk_bytes
    );
    Ok(settings)
}
