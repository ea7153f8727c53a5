//! A throwaway SoftHSM2 token (Debian's `softhsm2`): a configuration and a token directory
//! in a temporary directory, one token initialised with `softhsm2-util`. The library reads
//! `SOFTHSM2_CONF` once per process, so a test process shares one configuration; each
//! token has a label of its own.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
pub const PIN: &str = "4815162342";

pub struct Token {
    pub label: String,
    pub conf: PathBuf,
    pub tokens: PathBuf,
    pub pin_file: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

/// A new configuration with one token in a directory of its own (for a server started as
/// another process, which reads `conf` through `SOFTHSM2_CONF`).
pub fn token(label: &str) -> Token {
    let dir = tempfile::tempdir().unwrap();
    let mut t = token_in(dir.path(), label);
    t._dir = Some(dir);
    t
}

/// The token `label`, one of `labels`, in the configuration this process uses. The library
/// sees only the tokens that existed when it initialised: every test of the process names
/// them all, and the first call makes them.
pub fn in_process(labels: &[&str], label: &str) -> Token {
    static TOKENS: std::sync::OnceLock<Vec<Token>> = std::sync::OnceLock::new();
    let tokens = TOKENS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        write_conf(&dir);
        // Before any library in this process initialises.
        std::env::set_var("SOFTHSM2_CONF", dir.join("softhsm2.conf"));
        labels.iter().map(|l| token_in(&dir, l)).collect()
    });
    let t = tokens
        .iter()
        .find(|t| t.label == label)
        .expect("a label of the process's list");
    Token {
        label: t.label.clone(),
        conf: t.conf.clone(),
        tokens: t.tokens.clone(),
        pin_file: t.pin_file.clone(),
        _dir: None,
    }
}

fn write_conf(dir: &Path) {
    std::fs::create_dir_all(dir.join("tokens")).unwrap();
    std::fs::write(
        dir.join("softhsm2.conf"),
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
            dir.join("tokens").display()
        ),
    )
    .unwrap();
}

fn token_in(dir: &Path, label: &str) -> Token {
    assert!(
        Path::new(MODULE).exists(),
        "{MODULE} missing: install Debian's softhsm2 (scripts/install-deps does)"
    );
    let conf = dir.join("softhsm2.conf");
    if !conf.exists() {
        write_conf(dir);
    }
    let out = Command::new("softhsm2-util")
        .env("SOFTHSM2_CONF", &conf)
        .args(["--init-token", "--free", "--label", label])
        .args(["--so-pin", "1234567890", "--pin", PIN])
        .output()
        .expect("softhsm2-util");
    assert!(
        out.status.success(),
        "softhsm2-util --init-token: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pin_file = dir.join(format!("{label}.pin"));
    std::fs::write(&pin_file, format!("{PIN}\n")).unwrap();
    Token {
        label: label.to_owned(),
        conf,
        tokens: dir.join("tokens"),
        pin_file,
        _dir: None,
    }
}

impl Token {
    /// The object files SoftHSM keeps for this configuration's tokens.
    pub fn object_files(&self) -> usize {
        walk(&self.tokens)
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "object"))
            .count()
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
