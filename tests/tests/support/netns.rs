//! The network between a real agent and a real server, under the test's control. The
//! agent runs in a network namespace of its own, joined to the host (where the server and
//! the test run) by a veth pair; the faults are the kernel's:
//!
//! - the link down and up (`ip link set … down`);
//! - the agent's uplink capped (`tc qdisc … tbf`);
//! - packets dropped at random, or all UDP, in the agent's namespace (`nftables`);
//!
//! and delay with jitter by a userspace relay (`relay.rs`), because `netem` is not in this
//! kernel. Needs root (CI runs as root).

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

pub struct Netns {
    pub name: String,
    host_dev: String,
    agent_dev: String,
    pub host_ip: Ipv4Addr,
    pub agent_ip: Ipv4Addr,
}

fn run(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Netns {
    /// A fresh namespace and veth pair, on a /24 of its own under 10.64.0.0/10.
    pub fn new() -> Netns {
        // SAFETY: geteuid has no preconditions.
        assert_eq!(unsafe { libc::geteuid() }, 0, "the fault suite needs root (network namespaces, tc, nftables, tmpfs): run it as root, as CI does");
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let id = (std::process::id() * 16 + NEXT.fetch_add(1, Ordering::SeqCst)) % 16_384;
        let (a, b) = (64 + (id / 256) as u8, (id % 256) as u8);
        let n = Netns {
            name: format!("proctor-{id}"),
            host_dev: format!("pfh{id}"),
            agent_dev: format!("pfa{id}"),
            host_ip: Ipv4Addr::new(10, a, b, 1),
            agent_ip: Ipv4Addr::new(10, a, b, 2),
        };
        // A namespace left by a killed run of the same id goes first.
        let _ = Command::new("ip").args(["netns", "del", &n.name]).output();
        run(&["ip", "netns", "add", &n.name]);
        run(&[
            "ip",
            "link",
            "add",
            &n.host_dev,
            "type",
            "veth",
            "peer",
            "name",
            &n.agent_dev,
        ]);
        run(&["ip", "link", "set", &n.agent_dev, "netns", &n.name]);
        run(&[
            "ip",
            "addr",
            "add",
            &format!("{}/24", n.host_ip),
            "dev",
            &n.host_dev,
        ]);
        run(&["ip", "link", "set", &n.host_dev, "up"]);
        n.exec(&[
            "ip",
            "addr",
            "add",
            &format!("{}/24", n.agent_ip),
            "dev",
            &n.agent_dev,
        ]);
        n.exec(&["ip", "link", "set", &n.agent_dev, "up"]);
        n.exec(&["ip", "link", "set", "lo", "up"]);
        n
    }

    /// A default route through the host side: Firefox gathers its ICE candidates only on
    /// the interface of the default route.
    pub fn route_default(&self) {
        self.exec(&[
            "ip",
            "route",
            "replace",
            "default",
            "via",
            &self.host_ip.to_string(),
        ]);
    }

    fn exec(&self, args: &[&str]) {
        let mut all = vec!["ip", "netns", "exec", &self.name];
        all.extend_from_slice(args);
        run(&all);
    }

    /// `program` run inside the agent's namespace.
    pub fn command(&self, program: &std::path::Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    /// Cuts (false) or restores (true) the link.
    pub fn link(&self, up: bool) {
        run(&[
            "ip",
            "link",
            "set",
            &self.host_dev,
            if up { "up" } else { "down" },
        ]);
    }

    /// Caps what the agent sends to `kbit` kbit/s (its uplink); `None` lifts the cap.
    pub fn cap_uplink(&self, kbit: Option<u32>) {
        match kbit {
            Some(k) => self.exec(&[
                "tc",
                "qdisc",
                "replace",
                "dev",
                &self.agent_dev,
                "root",
                "tbf",
                "rate",
                &format!("{k}kbit"),
                "burst",
                "16kb",
                "latency",
                "400ms",
            ]),
            None => {
                let _ = Command::new("ip")
                    .args([
                        "netns",
                        "exec",
                        &self.name,
                        "tc",
                        "qdisc",
                        "del",
                        "dev",
                        &self.agent_dev,
                        "root",
                    ])
                    .output();
            }
        }
    }

    /// Drops `percent` % of the agent's packets each way, at random.
    pub fn drop_percent(&self, percent: u32) {
        self.nft(&format!(
            "table inet faults {{
               chain out {{ type filter hook output priority 0; numgen random mod 100 < {percent} drop; }}
               chain in {{ type filter hook input priority 0; numgen random mod 100 < {percent} drop; }}
             }}"
        ));
    }

    /// Blocks every UDP packet to and from the agent (a network that allows only TCP).
    pub fn block_udp(&self) {
        self.nft(
            "table inet faults {
               chain out { type filter hook output priority 0; meta l4proto udp drop; }
               chain in { type filter hook input priority 0; meta l4proto udp drop; }
             }",
        );
    }

    pub fn clear_faults(&self) {
        let _ = Command::new("ip")
            .args([
                "netns", "exec", &self.name, "nft", "delete", "table", "inet", "faults",
            ])
            .output();
        self.cap_uplink(None);
    }

    fn nft(&self, ruleset: &str) {
        let _ = Command::new("ip")
            .args([
                "netns", "exec", &self.name, "nft", "delete", "table", "inet", "faults",
            ])
            .output();
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.name, "nft", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(ruleset.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "nft: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace deletes the veth pair with it.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// A small file system of its own (tmpfs), to fill up: a disk that runs out of space.
pub struct Tmpfs {
    pub dir: std::path::PathBuf,
}

impl Tmpfs {
    pub fn mount(dir: &std::path::Path, megabytes: u32) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        run(&[
            "mount",
            "-t",
            "tmpfs",
            "-o",
            &format!("size={megabytes}m,mode=0700"),
            "tmpfs",
            dir.to_str().unwrap(),
        ]);
        Tmpfs {
            dir: dir.to_owned(),
        }
    }

    /// Fills what is left but `leave` bytes with a ballast file; returns its path.
    pub fn fill(&self, leave: u64) -> std::path::PathBuf {
        let ballast = self.dir.join(".ballast");
        let free = fs_free(&self.dir);
        let f = std::fs::File::create(&ballast).unwrap();
        use std::io::Write;
        let mut w = std::io::BufWriter::new(f);
        let block = vec![0u8; 64 * 1024];
        let mut left = free.saturating_sub(leave);
        while left > 0 {
            let n = left.min(block.len() as u64) as usize;
            if w.write_all(&block[..n]).is_err() {
                break;
            }
            left -= n as u64;
        }
        let _ = w.flush();
        ballast
    }
}

pub fn fs_free(dir: &std::path::Path) -> u64 {
    let out = Command::new("df")
        .args(["-B1", "--output=avail"])
        .arg(dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).output();
    }
}
