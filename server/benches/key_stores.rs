//! Key stores side by side, files in a directory against a PKCS#11 token (SoftHSM2):
//! wrapping and unwrapping a data key (what enrolment and every fragment served or
//! ingested cost), and destroying an epoch's key (how long the sweep takes to leave no
//! KEK anywhere). Median of the rounds; the file store is the baseline of the same run.
//!
//! `cargo bench -p server --bench key_stores`. Without `--bench` (as `cargo test --benches`
//! runs it) a tiny pass checks it still works.

#[path = "../tests/support/softhsm.rs"]
mod softhsm;

use server::keys::{FileKeks, KekStore, Pkcs11Keks};
use std::time::{Duration, Instant};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn measure(name: &str, store: &dyn KekStore, rounds: usize) -> [Duration; 3] {
    let dek = [7u8; 32];
    store.seal("2027-01-01", &dek, b"warm").unwrap();
    let (mut wrap, mut unwrap, mut destroy) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..rounds {
        let aad = format!("attempt {i}");
        let t = Instant::now();
        let sealed = store.seal("2027-01-01", &dek, aad.as_bytes()).unwrap();
        wrap.push(t.elapsed());
        let t = Instant::now();
        assert_eq!(
            &store.open("2027-01-01", &sealed, aad.as_bytes()).unwrap()[..],
            &dek
        );
        unwrap.push(t.elapsed());
    }
    for i in 0..rounds.min(200) {
        let epoch = format!("2028-{:02}-{:02}", 1 + i / 28 % 12, 1 + i % 28);
        store.seal(&epoch, &dek, b"").unwrap();
        let t = Instant::now();
        store.destroy(&epoch).unwrap();
        destroy.push(t.elapsed());
        assert!(!store.contains(&epoch).unwrap());
    }
    let m = [median(wrap), median(unwrap), median(destroy)];
    println!(
        "{name:>8}: wrap {:>8.1} µs, unwrap {:>8.1} µs, destroy an epoch {:>8.1} µs (medians)",
        m[0].as_secs_f64() * 1e6,
        m[1].as_secs_f64() * 1e6,
        m[2].as_secs_f64() * 1e6
    );
    m
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let rounds = if full { 2000 } else { 5 };
    let dir = tempfile::tempdir().unwrap();
    let file = FileKeks::open(dir.path()).unwrap();
    let token = softhsm::in_process(&["bench"], "bench");
    let pkcs11 = Pkcs11Keks::open(softhsm::MODULE.as_ref(), &token.label, softhsm::PIN).unwrap();
    println!("key stores, {} rounds", rounds);
    let f = measure("file", &file, rounds);
    let p = measure("pkcs11", &pkcs11, rounds);
    println!(
        "  pkcs11 / file: wrap {:.2}x, unwrap {:.2}x, destroy {:.2}x",
        p[0].as_secs_f64() / f[0].as_secs_f64(),
        p[1].as_secs_f64() / f[1].as_secs_f64(),
        p[2].as_secs_f64() / f[2].as_secs_f64()
    );
}
