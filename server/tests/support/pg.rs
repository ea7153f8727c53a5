//! A throwaway PostgreSQL cluster per test: `initdb` and `pg_ctl` from Debian's
//! `postgresql` package, in a temporary directory, on a free loopback port, stopped when
//! dropped. As root (CI), the server runs as the `postgres` user, since PostgreSQL refuses
//! root. `PROCTOR_TEST_DATABASE_URL` points the tests at an existing server instead (a
//! fresh database is created there per test).

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Cluster {
    dir: Option<tempfile::TempDir>,
    bin: PathBuf,
    pub url: String,
}

fn bin_dir() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path().join("bin"))
                .filter(|b| b.join("initdb").exists())
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    dirs.pop().expect("PostgreSQL server binaries not found under /usr/lib/postgresql: run scripts/install-deps (package postgresql)")
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn run(bin: &Path, tool: &str, args: &[&str]) {
    let path = bin.join(tool);
    let mut cmd = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(&path);
        c
    } else {
        Command::new(&path)
    };
    let out = cmd
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {tool}: {e}"));
    assert!(
        out.status.success(),
        "{tool} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Cluster {
    pub async fn start() -> Cluster {
        if let Ok(base) = std::env::var("PROCTOR_TEST_DATABASE_URL") {
            let name = format!("t_{}", uuid::Uuid::new_v4().simple());
            let admin = sqlx::PgPool::connect(&base)
                .await
                .expect("PROCTOR_TEST_DATABASE_URL reachable");
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&admin)
                .await
                .unwrap();
            let url = match base.rfind('/') {
                Some(i) if i > base.find("://").map_or(0, |s| s + 2) => {
                    format!("{}/{name}", &base[..i])
                }
                _ => format!("{base}/{name}"),
            };
            return Cluster {
                dir: None,
                bin: PathBuf::new(),
                url,
            };
        }
        let bin = bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("proctor-pg-")
            .tempdir()
            .unwrap();
        if is_root() {
            let id = |flag: &str| -> u32 {
                let out = Command::new("id")
                    .args([flag, "postgres"])
                    .output()
                    .expect("id");
                String::from_utf8_lossy(&out.stdout)
                    .trim()
                    .parse()
                    .expect("a postgres user (created by the postgresql package)")
            };
            std::os::unix::fs::chown(dir.path(), Some(id("-u")), Some(id("-g"))).unwrap();
        }
        let data = dir.path().join("data");
        let (data_s, sock) = (
            data.to_str().unwrap().to_owned(),
            dir.path().to_str().unwrap().to_owned(),
        );
        run(
            &bin,
            "initdb",
            &[
                "-D",
                &data_s,
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
                "--no-instructions",
            ],
        );
        let port = free_port();
        let opts =
            format!("-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c max_connections=200");
        run(
            &bin,
            "pg_ctl",
            &[
                "-D",
                &data_s,
                "-l",
                &format!("{sock}/log"),
                "-o",
                &opts,
                "-w",
                "-t",
                "30",
                "start",
            ],
        );
        Cluster {
            dir: Some(dir),
            bin,
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
        }
    }
}

impl Cluster {
    /// Restarts the server (`pg_ctl restart -m fast`: every client's connection is closed),
    /// as an upgrade or a failover would. Only a cluster of the test's own can be.
    #[allow(dead_code)] // the conformance tests' alone of the crates sharing this file
    pub fn restart(&self) {
        let dir = self.dir.as_ref().expect(
            "restarting PostgreSQL needs a cluster of the test's own: unset PROCTOR_TEST_DATABASE_URL",
        );
        let (data, log) = (dir.path().join("data"), dir.path().join("log"));
        // With its log file again: the server would otherwise keep this call's output open.
        run(
            &self.bin,
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-m",
                "fast",
                "-w",
                "-t",
                "30",
                "restart",
            ],
        );
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            let data = dir.path().join("data");
            run(
                &self.bin,
                "pg_ctl",
                &[
                    "-D",
                    data.to_str().unwrap(),
                    "-m",
                    "immediate",
                    "-w",
                    "stop",
                ],
            );
        }
    }
}
