//! Runs the real binaries: `proctor-server` on a temp data directory and `capture-agent`.
#![allow(dead_code)]

pub mod attack;
pub mod browser;
pub mod media;
pub mod netns;
pub mod procs;
pub mod relay;
pub mod scene;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const PLATFORM_TOKEN: &str = "e2e-platform-token";

pub fn bin(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let p = target.join("debug").join(name);
    assert!(
        p.exists(),
        "{} not built: run `cargo build --workspace --bins` first (scripts/test does)",
        p.display()
    );
    p
}

pub struct Server {
    pub child: Child,
    pub data: PathBuf,
    pub public: String,
    pub staff: String,
}

impl Server {
    /// Starts `serve` on `data`; `port` 0 picks a free one (a restart passes the old port).
    pub fn start(data: &Path, public_port: u16) -> Server {
        Self::start_with(data, public_port, &[])
    }

    /// `global_args` go before `serve`, e.g. `["--config", "tls.toml"]`.
    pub fn start_with(data: &Path, public_port: u16, global_args: &[&str]) -> Server {
        Self::start_with_env(data, public_port, global_args, &[])
    }

    /// `env` adds settings such as `PROCTOR_DATABASE__URL`.
    pub fn start_with_env(
        data: &Path,
        public_port: u16,
        global_args: &[&str],
        env: &[(String, String)],
    ) -> Server {
        Self::start_on(data, &format!("127.0.0.1:{public_port}"), global_args, env)
    }

    /// The public listener on `listen` (an address of the fault suite's veth, say); the
    /// staff listener stays on loopback.
    pub fn start_on(
        data: &Path,
        listen: &str,
        global_args: &[&str],
        env: &[(String, String)],
    ) -> Server {
        let mut cmd = Command::new(bin("proctor-server"));
        cmd.env("PROCTOR_LOG", "warn")
            .args(global_args)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .args(["--data-dir", data.to_str().unwrap(), "serve"])
            .args(["--listen", listen, "--staff-listen", "127.0.0.1:0"]);
        Self::spawn(data, cmd)
    }

    /// Starts `serve` on `data` logging at `debug` into `log` (what an operator's log
    /// collector would keep).
    pub fn start_logging(data: &Path, log: &Path) -> Server {
        let mut cmd = Command::new(bin("proctor-server"));
        cmd.args(["--data-dir", data.to_str().unwrap(), "serve"])
            .args(["--listen", "127.0.0.1:0", "--staff-listen", "127.0.0.1:0"])
            .env("PROCTOR_LOG", "debug")
            .stderr(std::fs::File::create(log).unwrap());
        Self::spawn(data, cmd)
    }

    fn spawn(data: &Path, mut cmd: Command) -> Server {
        // Packing (issue 22) rewrites a finished stream's objects two minutes after its
        // end: off unless a test asks, so that what a test finds in the store is what the
        // agents sent. `server/tests/api/packing.rs` and `instances.rs` run it.
        if !cmd.get_envs().any(|(k, _)| k == "PROCTOR_PACKING__ENABLED") {
            cmd.env("PROCTOR_PACKING__ENABLED", "false");
        }
        let mut child = cmd
            .env("PROCTOR_INTEGRATION__TOKEN", PLATFORM_TOKEN)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start proctor-server");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut text = String::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !text.trim_end().ends_with('}') {
            assert!(
                Instant::now() < deadline,
                "server did not announce its addresses"
            );
            let mut line = String::new();
            if out.read_line(&mut line).unwrap() == 0 {
                panic!("server exited early: {text}");
            }
            text.push_str(&line);
        }
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        Server {
            child,
            data: data.to_owned(),
            public: v["public"].as_str().unwrap().into(),
            staff: v["staff"].as_str().unwrap().into(),
        }
    }

    pub fn public_port(&self) -> u16 {
        self.public.rsplit(':').next().unwrap().parse().unwrap()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn cli(&self, args: &[&str]) -> serde_json::Value {
        cli(&self.data, args, &[])
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `--now` runs only where the configuration allows it (never in production).
pub const CLOCK_OVERRIDE: (&str, &str) = ("PROCTOR_SERVER__ALLOW_CLOCK_OVERRIDE", "true");

pub fn cli(data: &Path, args: &[&str], env: &[(&str, &str)]) -> serde_json::Value {
    let out = Command::new(bin("proctor-server"))
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "proctor-server {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&out.stdout).into()))
}

pub async fn post_platform(url: String, body: serde_json::Value) -> serde_json::Value {
    let r = reqwest::Client::new()
        .post(url)
        .bearer_auth(PLATFORM_TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    r.json().await.unwrap()
}

/// A sitting and one candidate through the integration API; returns (attempt id, launch token).
pub async fn enrol(server: &Server) -> (String, String) {
    enrol_at(&server.public).await
}

/// `enrol` against a public listener's base URL.
pub async fn enrol_at(public: &str) -> (String, String) {
    let s = post_platform(
        format!("{public}/api/integration/v1/sittings"),
        serde_json::json!({ "ref": format!("E2E-{}", uuid::Uuid::new_v4()) }),
    )
    .await;
    let sitting = s["sitting_id"].as_str().unwrap();
    let c = post_platform(
        format!("{public}/api/integration/v1/sittings/{sitting}/candidates"),
        serde_json::json!({ "ref": "candidat-1" }),
    )
    .await;
    (
        c["attempt_id"].as_str().unwrap().into(),
        c["launch_token"].as_str().unwrap().into(),
    )
}

pub fn agent(server_url: &str, token: &str, duration: &str, spool: &Path) -> Command {
    let mut c = Command::new(bin("capture-agent"));
    c.args([
        "--server",
        server_url,
        "--token",
        token,
        "--source",
        "test",
        "--duration",
        duration,
        "--consent",
        "--spool",
    ])
    .arg(spool)
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    c
}

/// Logs a staff member in and fetches the decrypted media of one stream.
pub async fn staff_media(server: &Server, attempt: &str, stream: &str) -> Vec<u8> {
    staff_media_env(server, attempt, stream, &[]).await
}

/// `staff_media` with settings for the CLI (e.g. the database URL).
pub async fn staff_media_env(
    server: &Server,
    attempt: &str,
    stream: &str,
    env: &[(&str, &str)],
) -> Vec<u8> {
    staff_media_via(&reqwest::Client::new(), server, attempt, stream, env).await
}

/// `staff_media` through a given client (one that trusts the server's test CA, say).
pub async fn staff_media_via(
    http: &reqwest::Client,
    server: &Server,
    attempt: &str,
    stream: &str,
    env: &[(&str, &str)],
) -> Vec<u8> {
    let login = format!("rev-{}", &uuid::Uuid::new_v4().to_string()[..8]);
    let mut env = env.to_vec();
    env.push(("PROCTOR_PASSWORD", "Kilo-Tango-2026!"));
    cli(
        &server.data,
        &["staff", "add", "--role", "reviewer", "--login", &login],
        &env,
    );
    let report = cli(&server.data, &["attempt", "show", attempt], &env);
    // Nobody watches live: a recording is reviewed once its exam has ended.
    if matches!(
        report["state"].as_str(),
        Some("enrolled" | "consented" | "recording")
    ) {
        cli(&server.data, &["attempt", "end", attempt], &env);
    }
    cli(
        &server.data,
        &[
            "staff",
            "assign",
            "--login",
            &login,
            "--sitting",
            report["sitting_id"].as_str().unwrap(),
        ],
        &env,
    );
    let token = staff_session_with(http, &server.staff, &login, "Kilo-Tango-2026!").await;
    let r = http
        .get(format!(
            "{}/api/staff/v1/attempts/{attempt}/streams/{stream}/media",
            server.staff
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap().to_vec()
}

/// Logs a new staff account in over the API and makes its forced first password change
/// (to `{password}+`); returns the session token.
pub async fn staff_session(staff_url: &str, login: &str, password: &str) -> String {
    staff_session_with(&reqwest::Client::new(), staff_url, login, password).await
}

/// `staff_session` through a given client (a terminal's, with its certificate).
pub async fn staff_session_with(
    http: &reqwest::Client,
    staff_url: &str,
    login: &str,
    password: &str,
) -> String {
    let t: serde_json::Value = http
        .post(format!("{staff_url}/api/staff/v1/login"))
        .json(&serde_json::json!({ "login": login, "password": password }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = t["token"]
        .as_str()
        .unwrap_or_else(|| panic!("login failed: {t}"))
        .to_owned();
    let r = http
        .post(format!("{staff_url}/api/staff/v1/account/password"))
        .bearer_auth(&token)
        .json(&serde_json::json!({ "current": password, "new": format!("{password}+") }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204, "forced first password change");
    token
}

/// Every regular file below `dir`.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Asserts that no 32-byte window of `plaintext` (sampled every 1 KiB) and no MP4 file
/// signature appears in any file under `dirs`. Signatures are 7 bytes long so that random
/// ciphertext cannot match them by chance.
pub fn assert_no_plaintext(plaintext: &[u8], dirs: &[&Path]) {
    use std::collections::HashMap;
    let mut needles: HashMap<u64, Vec<&[u8]>> = HashMap::new();
    for o in (0..plaintext.len().saturating_sub(32)).step_by(1024) {
        let n = &plaintext[o..o + 32];
        needles
            .entry(u64::from_le_bytes(n[..8].try_into().unwrap()))
            .or_default()
            .push(n);
    }
    assert!(needles.len() > 10, "too little plaintext to search for");
    for dir in dirs {
        for f in files_under(dir) {
            let bytes = std::fs::read(&f).unwrap();
            for sig in [b"ftypiso".as_slice(), b"ftypmp4".as_slice()] {
                assert!(
                    !bytes.windows(sig.len()).any(|w| w == sig),
                    "MP4 signature {:?} in {}",
                    String::from_utf8_lossy(sig),
                    f.display()
                );
            }
            for w in bytes.windows(32) {
                if let Some(cands) = needles.get(&u64::from_le_bytes(w[..8].try_into().unwrap())) {
                    assert!(
                        !cands.iter().any(|n| *n == w),
                        "plaintext media found in {}",
                        f.display()
                    );
                }
            }
        }
    }
}

/// A stored chunk's sealed bytes, found as the server finds them (its row, then its own
/// object or its range of its stream's file), in the data directory of a server on the
/// embedded database and a local directory.
pub async fn sealed_chunk(data: &Path, attempt: &str, stream: &str, index: u32) -> Vec<u8> {
    let mut s = server::configuration::load(None).unwrap();
    s.server.data_dir = data.to_owned();
    let db = server::state::open_database(&s).await.unwrap();
    let stream: uuid::Uuid = stream.parse().unwrap();
    let attempt: uuid::Uuid = attempt.parse().unwrap();
    let row = db.chunk(stream.into(), index).await.unwrap();
    server::blobs::BlobStore::open(&s.object_store, data)
        .unwrap()
        .read_chunk(attempt.into(), &row)
        .await
        .unwrap()
        .to_vec()
}
