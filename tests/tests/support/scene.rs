//! One fault scenario's world: the agent's network namespace, a TLS server on the host side
//! of the veth, one enrolled candidate, and the exact check every scenario ends on. Used
//! by the fault suite (`faults.rs`) and the soak (`benches/soak.rs`).

use super::netns::{Netns, Tmpfs};
use super::*;
use std::path::PathBuf;
use std::process::{Child, Output, Stdio};
use std::time::Duration;

/// One scenario's world: the agent's namespace, a TLS server on the host side of the veth,
/// one enrolled candidate.
pub struct Scene {
    pub tmp: tempfile::TempDir,
    pub net: Netns,
    pub cert: PathBuf,
    config: PathBuf,
    pub server: Server,
    pub listen: String,
    pub attempt: String,
    pub token: String,
    /// Small file systems mounted for the scenario (unmounted last).
    pub mounts: Vec<Tmpfs>,
    /// The server's extra settings (kept for a restart).
    env: Vec<(String, String)>,
}

impl Scene {
    pub fn new() -> Scene {
        Self::build(None, |_| Vec::new())
    }

    /// The server's blob store on a tmpfs of `megabytes`, to fill up.
    pub fn with_server_disk(megabytes: Option<u32>) -> Scene {
        Self::build(megabytes, |_| Vec::new())
    }

    /// `env(net)` adds the server's settings (the data channel's addresses, say).
    pub fn build(
        megabytes: Option<u32>,
        env: impl FnOnce(&Netns) -> Vec<(String, String)>,
    ) -> Scene {
        let tmp = tempfile::tempdir().unwrap();
        let mounts: Vec<Tmpfs> = megabytes
            .map(|mb| Tmpfs::mount(&tmp.path().join("data").join("blobs"), mb))
            .into_iter()
            .collect();
        let net = Netns::new();
        let env = env(&net);
        let cert =
            rcgen::generate_simple_self_signed(vec![net.host_ip.to_string(), "127.0.0.1".into()])
                .unwrap();
        let (cert_path, key_path) = (tmp.path().join("cert.pem"), tmp.path().join("key.pem"));
        std::fs::write(&cert_path, cert.cert.pem()).unwrap();
        std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
        let config = tmp.path().join("tls.toml");
        std::fs::write(
            &config,
            format!("[tls]\ncert_path = {cert_path:?}\nkey_path = {key_path:?}\n"),
        )
        .unwrap();
        let data = tmp.path().join("data");
        let server = Server::start_on(
            &data,
            &format!("{}:0", net.host_ip),
            &["--config", config.to_str().unwrap()],
            &env,
        );
        let listen = server.public.trim_start_matches("https://").to_owned();
        let sitting = server.cli(&[
            "sitting",
            "create",
            "--ref",
            &format!("FAULT-{}", uuid::Uuid::new_v4()),
        ]);
        let cand = server.cli(&[
            "candidate",
            "add",
            "--sitting",
            sitting["sitting_id"].as_str().unwrap(),
            "--ref",
            "c",
        ]);
        let (attempt, token) = (
            cand["attempt_id"].as_str().unwrap().to_owned(),
            cand["launch_token"].as_str().unwrap().to_owned(),
        );
        Scene {
            tmp,
            net,
            cert: cert_path,
            config,
            server,
            listen,
            attempt,
            token,
            mounts,
            env,
        }
    }

    pub fn spool(&self) -> PathBuf {
        self.tmp.path().join("spool")
    }

    /// The agent, in its namespace, sending to `server` (the server itself, or a relay).
    pub fn agent_to(&self, server: &str, duration: &str) -> std::process::Command {
        let mut c = self.net.command(&bin("capture-agent"));
        c.args([
            "--server",
            server,
            "--token",
            &self.token,
            "--source",
            "test-busy",
            "--duration",
            duration,
            "--consent",
            "--spool",
        ])
        .arg(self.spool())
        .arg("--ca-file")
        .arg(&self.cert)
        .env("CLOE_AGENT_LOG", "capture_agent=info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        c
    }

    pub fn agent(&self, duration: &str) -> std::process::Command {
        self.agent_to(&format!("https://{}", self.listen), duration)
    }

    /// The agent on one transport ("webrtc", "https"; `agent` leaves the default, auto).
    pub fn agent_over(&self, transport: &str, duration: &str) -> std::process::Command {
        let mut c = self.agent(duration);
        c.args(["--transport", transport]);
        c
    }

    pub fn carried(report: &serde_json::Value, transport: &str) -> u64 {
        report["chunks_by_transport"][transport]
            .as_u64()
            .unwrap_or(0)
    }

    pub fn restart_server(&mut self) {
        let data = self.server.data.clone();
        self.server = Server::start_on(
            &data,
            &self.listen,
            &["--config", self.config.to_str().unwrap()],
            &self.env,
        );
    }

    /// The staff listener serves the same certificate.
    pub fn staff_client(&self) -> reqwest::Client {
        let ca = reqwest::Certificate::from_pem(&std::fs::read(&self.cert).unwrap()).unwrap();
        reqwest::Client::builder()
            .add_root_certificate(ca)
            .build()
            .unwrap()
    }

    pub fn show(&self) -> serde_json::Value {
        self.server.cli(&["attempt", "show", &self.attempt])
    }

    /// The exact check: every chunk the agent runs sealed is stored once (rows and blobs),
    /// nothing is missing, every stream ends as expected, and each stream's decrypted media
    /// decodes for as long as it recorded.
    pub async fn every_fragment_stored_once_and_decodes(
        &self,
        sealed: u64,
        abrupt_streams: usize,
    ) -> serde_json::Value {
        let report = self.show();
        assert_eq!(
            report["fragments_stored"].as_u64().unwrap(),
            sealed,
            "every sealed chunk stored once: {report:#}"
        );
        assert_eq!(report["missing"].as_array().unwrap().len(), 0, "{report:#}");
        let streams = report["streams"].as_array().unwrap().clone();
        let abrupt = streams
            .iter()
            .filter(|s| s["status"] == "ended_abruptly")
            .count();
        assert_eq!(abrupt, abrupt_streams, "{report:#}");
        assert_eq!(
            report["integrity"],
            if abrupt_streams == 0 {
                "ok"
            } else {
                "incomplete"
            },
            "{report:#}"
        );
        // Appended to their streams' files: none alone, a file per stream at least (a
        // restart or a late chunk after the last one opens another), never one per chunk.
        let files = files_under(&self.server.data.join("blobs"));
        let of = |ext: &str| {
            files
                .iter()
                .filter(|p| p.extension().is_some_and(|e| e == ext))
                .count()
        };
        assert_eq!(of("chunk"), 0, "{files:?}");
        assert_eq!(of("pack"), files.len(), "{files:?}");
        assert!(
            (streams.len()..=sealed as usize).contains(&files.len()),
            "{} stream files for {} chunks: {files:?}",
            files.len(),
            sealed
        );
        for s in &streams {
            let id = s["stream_id"].as_str().unwrap();
            let media =
                staff_media_via(&self.staff_client(), &self.server, &self.attempt, id, &[]).await;
            let decoded = media::decode(&media)
                .unwrap_or_else(|e| panic!("stream {id} does not decode: {e}"));
            let recorded = s["recorded_seconds"].as_f64().unwrap();
            assert!(
                (decoded.video_seconds - recorded).abs() <= 2.5,
                "stream {id}: decoded {decoded:?}, recorded {recorded} s"
            );
            assert!(
                decoded.audio_seconds >= recorded - 2.5,
                "stream {id}: {decoded:?}"
            );
        }
        report
    }
}

pub fn summary(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "capture-agent failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let s: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("agent prints a JSON summary");
    assert_eq!(
        (s["chunks_dropped"].as_u64(), s["chunks_unsent"].as_u64()),
        (Some(0), Some(0)),
        "{s:#}"
    );
    assert!(
        s["stopped"].is_null() && s["capture_error"].is_null(),
        "{s:#}"
    );
    // Leftovers of an earlier run are acknowledged too.
    assert!(
        s["chunks_acknowledged"].as_u64() >= s["fragments_sealed"].as_u64(),
        "{s:#}"
    );
    s
}

/// A running agent, killed if the test ends (or fails) before it exits: no agent outlives
/// its scenario.
pub struct Running(pub Option<Child>);

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn start(mut cmd: std::process::Command) -> Running {
    Running(Some(cmd.spawn().expect("start capture-agent")))
}

/// The agent's output once it exits; an agent still running after 15 minutes is killed
/// (the test then fails on its output) rather than left behind.
pub async fn finish(mut running: Running) -> Output {
    let child = running.0.take().expect("not finished yet");
    let pid = child.id();
    let waiting = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap());
    let killer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(900)).await;
        // SAFETY: kill(2) on the agent's pid, which this test started and still waits for.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    });
    let out = waiting.await.unwrap();
    killer.abort();
    out
}

pub fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("VmRSS:")
                    .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
            })
        })
        .unwrap_or(0)
}
