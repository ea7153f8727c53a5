//! Unrelated dirty data on the blob file system: what a build, a backup or a file copy
//! leaves in the page cache beside the server. The blob sync must not wait for it to be
//! written back. `Unrelated` makes it (plain writes into a file of its own, never synced);
//! `mib` says how much the kernel holds dirty or under write-back, machine-wide.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Dirty and under write-back, in MiB (`/proc/meminfo`).
pub fn mib() -> u64 {
    let info = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let kib = |key: &str| -> u64 {
        info.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (kib("Dirty:") + kib("Writeback:")) / 1024
}

/// A file of `bytes` written under `dir` and left to the kernel's write-back; removed, its
/// pages dropped, on drop.
pub struct Unrelated {
    path: PathBuf,
}

impl Unrelated {
    pub fn write(dir: &Path, bytes: u64) -> Self {
        let path = dir.join(format!("unrelated-{}.bin", uuid::Uuid::new_v4()));
        let mut f = std::fs::File::create(&path).expect("unrelated file");
        let piece: Vec<u8> = (0..8 << 20).map(|i: usize| (i * 31 + 7) as u8).collect();
        for _ in 0..bytes.div_ceil(piece.len() as u64) {
            f.write_all(&piece).expect("unrelated write");
        }
        Self { path }
    }
}

impl Drop for Unrelated {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
