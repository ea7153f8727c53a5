//! Where the key-encryption keys live, looked at from outside the server (issue 19 #1): the
//! raw bytes of a loop-mounted ext4 key volume after `retention run` destroyed an epoch,
//! and the objects of a PKCS#11 token (SoftHSM2) a server keeps its keys on.

mod support;

#[path = "../../server/tests/support/softhsm.rs"]
mod softhsm;

use std::path::{Path, PathBuf};
use std::process::Command;
use support::*;

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A small ext4 file system in an image file, loop-mounted (root, as CI runs), unmounted
/// on drop.
struct Volume {
    image: PathBuf,
    mount: PathBuf,
    mounted: bool,
}

impl Volume {
    fn new(dir: &Path) -> Volume {
        let (image, mount) = (dir.join("keys.img"), dir.join("keys"));
        std::fs::create_dir_all(&mount).unwrap();
        std::fs::File::create(&image)
            .unwrap()
            .set_len(16 << 20)
            .unwrap();
        run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&image));
        run(Command::new("mount")
            .args(["-o", "loop"])
            .arg(&image)
            .arg(&mount));
        Volume {
            image,
            mount,
            mounted: true,
        }
    }

    /// The image's raw bytes, with everything written so far on it (free blocks included).
    fn raw(&self) -> Vec<u8> {
        run(Command::new("sync").arg("-f").arg(&self.mount));
        std::fs::read(&self.image).unwrap()
    }

    fn unmount(&mut self) {
        if std::mem::take(&mut self.mounted) {
            run(Command::new("umount").arg(&self.mount));
        }
    }
}

impl Drop for Volume {
    fn drop(&mut self) {
        if self.mounted {
            let _ = Command::new("umount").arg(&self.mount).status();
        }
    }
}

fn holds(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Creates an attempt on 2027-01-10 (its data key wrapped under the 10th's KEK).
fn enrol_on_the_10th(data: &Path, flags: &[&str], env: &[(&str, &str)]) -> String {
    let env: Vec<(&str, &str)> = [env, &[CLOCK_OVERRIDE]].concat();
    let at = |rest: &[&str]| {
        cli(
            data,
            &[flags, &["--now", "2027-01-10T09:00:00Z"], rest].concat(),
            &env,
        )
    };
    let sitting = at(&["sitting", "create", "--ref", "S-VOL"])["sitting_id"]
        .as_str()
        .unwrap()
        .to_owned();
    at(&["candidate", "add", "--sitting", &sitting, "--ref", "C-VOL"])["attempt_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Erases the attempt on the 10th and sweeps on the 12th: the sweep destroys the 10th's
/// KEK. Returns what the sweep said.
fn erase_and_sweep(
    data: &Path,
    flags: &[&str],
    env: &[(&str, &str)],
    attempt: &str,
) -> serde_json::Value {
    let env: Vec<(&str, &str)> = [env, &[CLOCK_OVERRIDE]].concat();
    let at = |now: &str, rest: &[&str]| cli(data, &[flags, &["--now", now], rest].concat(), &env);
    let reason = "demande du candidat";
    at(
        "2027-01-10T10:00:00Z",
        &["attempt", "erase", attempt, "--reason", reason],
    );
    let swept = at("2027-01-12T00:00:01Z", &["retention", "run"]);
    assert_eq!(
        swept["epochs_destroyed"],
        serde_json::json!(["2027-01-10"]),
        "{swept}"
    );
    swept
}

/// The file store on a volume of its own: after the sweep destroys an epoch, a raw scan of
/// the volume's image (free blocks, journal and all) finds no byte string of the KEK. The
/// same scan finds it before, so the scan can see a key when one is there.
#[test]
fn a_destroyed_kek_is_not_on_the_key_volume() {
    let tmp = tempfile::tempdir().unwrap();
    let mut volume = Volume::new(tmp.path());
    let data = tmp.path().join("data");
    let key_dir = volume.mount.join("kek");
    let flags = ["--key-dir", key_dir.to_str().unwrap()];
    let attempt = enrol_on_the_10th(&data, &flags, &[]);
    let kek = std::fs::read(key_dir.join("kek-2027-01-10.key")).unwrap();
    assert_eq!(kek.len(), 32);
    assert!(holds(&volume.raw(), &kek), "the scan sees a live key");

    erase_and_sweep(&data, &flags, &[], &attempt);
    assert!(!key_dir.join("kek-2027-01-10.key").exists());
    volume.unmount();
    let raw = std::fs::read(&volume.image).unwrap();
    assert!(
        !holds(&raw, &kek),
        "the destroyed KEK's bytes are still on the key volume"
    );
    // Not a scan that finds nothing at all: the receipt signing key is still there.
    assert!(
        holds(&raw, b"receipt"),
        "the scan reads the volume's contents"
    );
}

/// A server whose KEKs are on a PKCS#11 token: no KEK file is ever written in the key
/// directory, the sweep destroys the epoch's key on the token (one object fewer), and
/// nothing of the erased attempt can be exported afterwards.
#[test]
fn a_server_on_a_pkcs11_token_destroys_the_epoch_on_the_token() {
    let token = softhsm::token("cloe-e2e");
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (conf, pin) = (
        token.conf.to_str().unwrap(),
        token.pin_file.to_str().unwrap(),
    );
    let env = [
        ("SOFTHSM2_CONF", conf),
        ("PROCTOR_KEYS__STORE", "pkcs11"),
        ("PROCTOR_KEYS__MODULE", softhsm::MODULE),
        ("PROCTOR_KEYS__TOKEN", "cloe-e2e"),
        ("PROCTOR_KEYS__PIN_FILE", pin),
    ];
    let before = token.object_files();
    let attempt = enrol_on_the_10th(&data, &[], &env);
    assert_eq!(
        token.object_files(),
        before + 1,
        "the 10th's KEK is made on the token"
    );
    let swept = erase_and_sweep(&data, &[], &env, &attempt);
    let keys = data.join("keys");
    let kek_files: Vec<_> = files_under(&keys)
        .into_iter()
        .filter(|f| {
            f.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("kek-20")
        })
        .collect();
    assert!(
        kek_files.is_empty(),
        "a KEK file in the key directory: {kek_files:?}"
    );
    assert_eq!(
        token.object_files(),
        before,
        "the 10th's key was made on the token, then destroyed there: {swept}"
    );
    let env: Vec<(&str, &str)> = [&env[..], &[CLOCK_OVERRIDE]].concat();
    let out = Command::new(bin("proctor-server"))
        .arg("--data-dir")
        .arg(&data)
        .args([
            "--now",
            "2027-01-12T00:00:02Z",
            "attempt",
            "export",
            &attempt,
        ])
        .args([
            "--recipient",
            "age1lggyhqrw2nlhcxprm67z43rta597azn8gknawjehu9d9dl0jq3yqqvfafg",
        ])
        .args(["--out", tmp.path().join("x.age").to_str().unwrap()])
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("destroyed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A live attempt's key is made on the token too, and reads back through it.
    let later = cli(
        &data,
        &[
            "--now",
            "2027-01-12T09:00:00Z",
            "sitting",
            "create",
            "--ref",
            "S-LIVE",
        ],
        &env,
    );
    assert!(later["sitting_id"].is_string(), "{later}");
    let candidate = cli(
        &data,
        &[
            "--now",
            "2027-01-12T09:00:00Z",
            "candidate",
            "add",
            "--sitting",
            later["sitting_id"].as_str().unwrap(),
            "--ref",
            "C-LIVE",
        ],
        &env,
    );
    assert_eq!(token.object_files(), before + 1, "{candidate}");
    let shown = cli(
        &data,
        &[
            "--now",
            "2027-01-12T09:00:01Z",
            "attempt",
            "show",
            candidate["attempt_id"].as_str().unwrap(),
        ],
        &env,
    );
    assert_eq!(shown["state"], "enrolled", "{shown}");
}
