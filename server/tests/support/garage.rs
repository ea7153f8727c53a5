//! A throwaway single-node Garage (S3-compatible object store) per test: its own temporary
//! directory and loopback ports, a bucket and a key, killed when dropped. The binary comes
//! from `GARAGE_BIN`, the `PATH` or `~/.cargo/bin` (`scripts/install-deps` builds it).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Garage {
    child: Child,
    _dir: tempfile::TempDir,
    pub settings: server::blobs::ObjectStoreSettings,
}

fn garage_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("GARAGE_BIN") {
        return p.into();
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("garage"));
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    on_path
        .chain(cargo_home.map(|c| c.join("bin/garage")))
        .find(|p| p.is_file())
        .expect("garage not found: run scripts/install-deps (it builds Garage 2.5.0 with cargo install)")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Garage {
    pub fn start() -> Garage {
        let bin = garage_bin();
        let dir = tempfile::Builder::new()
            .prefix("proctor-garage-")
            .tempdir()
            .unwrap();
        let (rpc, s3) = (free_port(), free_port());
        let secret: String = (0..32)
            .map(|_| format!("{:02x}", rand::random::<u8>()))
            .collect();
        let config = dir.path().join("garage.toml");
        // Chunks are ciphertext: zstd over them costs the store CPU for nothing (as in
        // production, docs/deployment.md).
        std::fs::write(
            &config,
            format!(
                "metadata_dir = {meta:?}\ndata_dir = {data:?}\ndb_engine = \"sqlite\"\nreplication_factor = 1\ncompression_level = \"none\"\n\
                 rpc_bind_addr = \"127.0.0.1:{rpc}\"\nrpc_public_addr = \"127.0.0.1:{rpc}\"\nrpc_secret = \"{secret}\"\n\n\
                 [s3_api]\ns3_region = \"garage\"\napi_bind_addr = \"127.0.0.1:{s3}\"\nroot_domain = \".s3.garage.localhost\"\n",
                meta = dir.path().join("meta"),
                data = dir.path().join("data"),
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("garage.log")).unwrap();
        let child = Command::new(&bin)
            .arg("-c")
            .arg(&config)
            .arg("server")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start garage");
        let cli = |args: &[&str]| -> Result<String, String> {
            let out = Command::new(&bin)
                .arg("-c")
                .arg(&config)
                .args(args)
                .stdin(Stdio::null())
                .output()
                .map_err(|e| e.to_string())?;
            if out.status.success() {
                Ok(String::from_utf8_lossy(&out.stdout).into_owned())
            } else {
                Err(format!(
                    "garage {args:?}: {}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ))
            }
        };
        // `node id` answers from the key file before the server listens; `status` asks the
        // server itself, so it is the readiness check.
        let deadline = Instant::now() + Duration::from_secs(30);
        while let Err(e) = cli(&["status"]) {
            assert!(Instant::now() < deadline, "garage did not start: {e}");
            std::thread::sleep(Duration::from_millis(200));
        }
        let node = cli(&["node", "id", "-q"])
            .unwrap()
            .trim()
            .split('@')
            .next()
            .unwrap()
            .to_owned();
        cli(&["layout", "assign", "-z", "dc1", "-c", "1G", &node]).unwrap();
        cli(&["layout", "apply", "--version", "1"]).unwrap();
        cli(&["bucket", "create", "proctor"]).unwrap();
        let key = cli(&["key", "create", "proctor-key"]).unwrap();
        let field = |name: &str| {
            key.lines()
                .find(|l| l.to_lowercase().trim_start().starts_with(name))
                .and_then(|l| l.split(':').nth(1))
                .map(|v| v.trim().to_owned())
                .unwrap_or_else(|| panic!("no {name:?} in `garage key create` output: {key}"))
        };
        let (key_id, secret_key) = (field("key id"), field("secret key"));
        cli(&[
            "bucket",
            "allow",
            "--read",
            "--write",
            "--owner",
            "proctor",
            "--key",
            "proctor-key",
        ])
        .unwrap();
        let settings = server::blobs::ObjectStoreSettings {
            url: Some("s3://proctor".into()),
            endpoint: Some(format!("http://127.0.0.1:{s3}")),
            region: Some("garage".into()),
            allow_http: true,
            access_key_id: Some(key_id),
            secret_access_key: Some(secret_key),
            local_files: Default::default(),
        };
        Garage {
            child,
            _dir: dir,
            settings,
        }
    }

    /// The bucket's endpoint, region and credentials as a server process reads them
    /// (`PROCTOR_OBJECT_STORE__*`), without the bucket URL itself.
    #[allow(dead_code)] // not every test crate that includes this harness runs processes
    pub fn env(&self) -> Vec<(String, String)> {
        let s = &self.settings;
        [
            (
                "PROCTOR_OBJECT_STORE__ENDPOINT",
                s.endpoint.clone().unwrap(),
            ),
            ("PROCTOR_OBJECT_STORE__REGION", s.region.clone().unwrap()),
            ("PROCTOR_OBJECT_STORE__ALLOW_HTTP", "true".into()),
            (
                "PROCTOR_OBJECT_STORE__ACCESS_KEY_ID",
                s.access_key_id.clone().unwrap(),
            ),
            (
                "PROCTOR_OBJECT_STORE__SECRET_ACCESS_KEY",
                s.secret_access_key.clone().unwrap(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
