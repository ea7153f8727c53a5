//! The audit trail: appends (each one chained by the database), the checkpoints that make
//! a truncation visible, and the verification behind `proctor-server audit verify`.
//!
//! The hash chain alone shows an edited entry, but not the removal of the newest ones,
//! nor a rewrite that recomputes every later hash: whoever can write the database can
//! do both. So every append also writes `seq hash` to an append-only file under the key
//! directory, which lives outside the database and its backups. Verification wants every
//! checkpointed entry present with the hash it had.

mod segments;
mod walk;

pub use segments::{check_segments, Anchor};
pub use walk::Walk;

use crate::db::AttemptId;
use crate::db::AuditEntry;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub const CHECKPOINT_FILE: &str = "audit-checkpoints.log";

/// Appends checkpoints; one open file per process, each line written in one `write` to a
/// file opened with `O_APPEND`, so several instances sharing the key directory interleave
/// whole lines.
#[derive(Clone)]
pub struct Checkpoints {
    path: PathBuf,
    file: Arc<Mutex<Option<std::fs::File>>>,
}

impl Checkpoints {
    pub fn new(key_dir: &Path) -> Self {
        Self {
            path: key_dir.join(CHECKPOINT_FILE),
            file: Arc::new(Mutex::new(None)),
        }
    }

    /// Records that entry `seq` had hash `hash`, durably (the entry's data is about to
    /// leave, and a checkpoint lost in a crash would let a truncation pass).
    pub async fn record(&self, seq: i64, hash: [u8; 32]) -> std::io::Result<()> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = me.file.lock().unwrap_or_else(|p| p.into_inner());
            if guard.is_none() {
                let mut file = std::fs::OpenOptions::new()
                    .create(true)
                    .read(true)
                    .append(true)
                    .open(&me.path)?;
                // A line torn by a crash or a full disk is closed first, so that it stays
                // the one bad line (ignored as the last) instead of swallowing the next.
                if !ends_with_newline(&mut file)? {
                    file.write_all(b"\n")?;
                }
                *guard = Some(file);
            }
            let file = guard.as_mut().expect("opened above");
            let written = file
                .write_all(format!("{seq} {}\n", hex::encode(hash)).as_bytes())
                .and_then(|()| file.sync_data());
            if written.is_err() {
                // Reopen next time, which closes whatever part of the line got out.
                *guard = None;
            }
            written
        })
        .await
        .map_err(std::io::Error::other)?
    }

    /// Every checkpoint written so far, in file order. A torn line (crash in the middle
    /// of a write) is skipped: a later checkpoint covers its entry; anything else
    /// malformed is an error. No file at all reads as no checkpoint: `verify` refuses a
    /// non-empty trail without any.
    pub fn read(&self) -> Result<Vec<(i64, [u8; 32])>, AuditBroken> {
        let file = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(AuditBroken::Checkpoints(format!(
                    "{}: {e}",
                    self.path.display()
                )))
            }
        };
        let lines: Vec<String> = std::io::BufReader::new(file)
            .lines()
            .collect::<Result<_, _>>()
            .map_err(|e| AuditBroken::Checkpoints(e.to_string()))?;
        let mut out = Vec::with_capacity(lines.len());
        for (n, line) in lines.iter().enumerate() {
            match parse_line(line) {
                Some(c) => out.push(c),
                // A torn line: a prefix of a well-formed one.
                None if is_torn(line) => {}
                None => {
                    return Err(AuditBroken::Checkpoints(format!(
                        "line {} of {} is malformed",
                        n + 1,
                        self.path.display()
                    )))
                }
            }
        }
        Ok(out)
    }
}

fn ends_with_newline(file: &mut std::fs::File) -> std::io::Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    if file.metadata()?.len() == 0 {
        return Ok(true);
    }
    file.seek(SeekFrom::End(-1))?;
    let mut last = [0u8; 1];
    file.read_exact(&mut last)?;
    Ok(last[0] == b'\n')
}

/// What a crash can leave of a line: digits, maybe a space and fewer than 64 hex digits.
fn is_torn(line: &str) -> bool {
    let (seq, hash) = line.split_once(' ').unwrap_or((line, ""));
    seq.chars().all(|c| c.is_ascii_digit())
        && hash.len() < 64
        && hash.chars().all(|c| c.is_ascii_hexdigit())
}

fn parse_line(line: &str) -> Option<(i64, [u8; 32])> {
    let (seq, hash) = line.split_once(' ')?;
    let hash: [u8; 32] = hex::decode(hash).ok()?.try_into().ok()?;
    Some((seq.parse().ok()?, hash))
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuditBroken {
    #[error("audit entry {0} does not chain to the entry before it (edited, inserted or removed)")]
    Chain(i64),
    #[error("audit entry {0} is missing: the checkpoint outside the database says it existed (trail truncated)")]
    Missing(i64),
    #[error("audit entry {0} differs from its checkpoint outside the database (trail rewritten)")]
    Rewritten(i64),
    #[error("audit entry {0} is dated before an earlier entry by more than the clock's tolerance (time set back, or an entry back-dated)")]
    TimeReversed(i64),
    #[error("audit checkpoints unreadable: {0}")]
    Checkpoints(String),
    #[error("retired audit segment ending at entry {0}: {1}")]
    Segment(i64, String),
}

/// How far an entry may be dated before one appended earlier: writers stamp an entry when
/// they make it and append it a moment later, so two concurrent ones can land out of
/// order by the time a commit takes. Beyond this, time was set back.
pub const CLOCK_TOLERANCE_MS: i64 = 60_000;

impl AuditBroken {
    /// The first bad entry, when one is named.
    pub fn seq(&self) -> Option<i64> {
        match self {
            Self::Chain(s) | Self::Missing(s) | Self::Rewritten(s) | Self::TimeReversed(s) => {
                Some(*s)
            }
            Self::Segment(s, _) => Some(*s),
            Self::Checkpoints(_) => None,
        }
    }
}

/// Checks the chain, then every checkpoint against it. Reports the first bad entry
/// (lowest sequence number) whichever check finds it.
pub fn verify(trail: &[AuditEntry], checkpoints: &[(i64, [u8; 32])]) -> Result<(), AuditBroken> {
    verify_from(trail, checkpoints, &Anchor::START)
}

/// The same, for a trail whose oldest entries were retired up to `anchor` (checked by
/// [`check_segments`]): the first kept entry chains onto the segment's last hash, and the
/// checkpoint of that last entry, outside the database, must say the same hash.
pub fn verify_from(
    trail: &[AuditEntry],
    checkpoints: &[(i64, [u8; 32])],
    anchor: &Anchor,
) -> Result<(), AuditBroken> {
    let mut walk = Walk::new(checkpoints, anchor);
    walk.page(trail);
    walk.finish()
}

/// An entry as it is shown (admin page, API, `audit list`): the detail as JSON.
#[derive(Debug, serde::Serialize)]
pub struct EntryView {
    pub seq: i64,
    pub at_ms: i64,
    pub actor: String,
    pub action: String,
    pub attempt_id: Option<AttemptId>,
    pub detail: serde_json::Value,
}

impl From<&AuditEntry> for EntryView {
    fn from(e: &AuditEntry) -> Self {
        Self {
            seq: e.seq,
            at_ms: e.at_ms,
            actor: e.actor.clone(),
            action: e.action.clone(),
            attempt_id: e.attempt_id,
            detail: serde_json::from_str(&e.detail).unwrap_or_default(),
        }
    }
}

#[derive(Debug, serde::Serialize)]
pub struct Verification {
    pub intact: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_bad_entry: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Entries read at once by `verify_kept`.
const VERIFY_PAGE: u32 = 5_000;

/// What a verification that passed went through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    pub entries: i64,
    pub checkpoints: usize,
    pub retired_up_to: i64,
}

#[derive(Debug, serde::Serialize)]
pub struct AuditReport {
    pub total: usize,
    pub verification: Verification,
    /// The newest first.
    pub entries: Vec<EntryView>,
}

/// The trail as the use cases write it: each entry appended, then its checkpoint written
/// before the data it describes leaves. Cheap to clone: every use case holds one.
#[derive(Clone)]
pub struct Audit {
    db: Arc<dyn crate::db::Database>,
    checkpoints: Checkpoints,
    clock: crate::clock::SharedClock,
}

impl Audit {
    pub fn new(
        db: Arc<dyn crate::db::Database>,
        checkpoints: Checkpoints,
        clock: crate::clock::SharedClock,
    ) -> Self {
        Self {
            db,
            checkpoints,
            clock,
        }
    }

    pub async fn record(
        &self,
        actor: &str,
        action: &str,
        attempt: Option<AttemptId>,
        detail: serde_json::Value,
    ) -> Result<(), crate::failure::Failure> {
        let entry = self
            .db
            .append_audit(crate::db::AuditEvent {
                at_ms: self.clock.now_ms(),
                actor: actor.into(),
                action: action.into(),
                attempt_id: attempt,
                detail,
            })
            .await?;
        self.checkpoint(&entry).await
    }

    /// Writes the checkpoint of an entry just appended (the database's own transitions
    /// append theirs), before its data leaves.
    pub async fn checkpoint(&self, entry: &AuditEntry) -> Result<(), crate::failure::Failure> {
        self.checkpoints
            .record(entry.seq, entry.hash)
            .await
            .map_err(|e| {
                crate::failure::Failure::Internal(anyhow::anyhow!(
                    "writing the audit checkpoint: {e}"
                ))
            })
    }

    /// A staff member's access to a recording, with the terminal it came from.
    pub async fn access(
        &self,
        staff: &crate::identity::StaffIdentity,
        action: &str,
        attempt: Option<AttemptId>,
        mut detail: serde_json::Value,
    ) -> Result<(), crate::failure::Failure> {
        if let (Some(t), Some(map)) = (&staff.terminal, detail.as_object_mut()) {
            map.insert("terminal".into(), serde_json::Value::String(t.clone()));
        }
        self.record(&staff.login, action, attempt, detail).await
    }

    /// The trail after entry `after`, oldest first, at most `limit` entries (`audit list`
    /// reads it page by page).
    pub async fn page(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, crate::failure::Failure> {
        Ok(self.db.audit_page(after, limit).await?)
    }

    /// Checks the kept trail page by page: the retired segments against `trusted` (the
    /// receipts' public key), then the chain from the last of them, then every checkpoint.
    pub async fn verify_kept(
        &self,
        trusted: &str,
    ) -> Result<Result<Verified, AuditBroken>, crate::failure::Failure> {
        let anchor = match self.anchor(trusted).await? {
            Ok(anchor) => anchor,
            Err(e) => return Ok(Err(e)),
        };
        let checkpoints = match self.checkpoints.read() {
            Ok(c) => c,
            Err(e) => return Ok(Err(e)),
        };
        let mut walk = Walk::new(&checkpoints, &anchor);
        let mut after = anchor.up_to_seq;
        loop {
            let page = self.db.audit_page(after, VERIFY_PAGE).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            walk.page(&page);
        }
        let entries = walk.entries();
        Ok(walk.finish().map(|()| Verified {
            entries,
            checkpoints: checkpoints.len(),
            retired_up_to: anchor.up_to_seq,
        }))
    }

    /// The checkpoints as written (`audit verify`).
    pub fn checkpoints(&self) -> &Checkpoints {
        &self.checkpoints
    }

    /// The newest `limit` entries and the verdict on the whole trail, for the admin; the
    /// reading is itself audited.
    pub async fn report(
        &self,
        actor: &str,
        limit: usize,
        trusted: &str,
    ) -> Result<AuditReport, crate::failure::Failure> {
        self.record(
            actor,
            "audit_read",
            None,
            serde_json::json!({ "limit": limit }),
        )
        .await?;
        let verification = match self.verify_kept(trusted).await? {
            Ok(_) => Verification {
                intact: true,
                first_bad_entry: None,
                reason: None,
            },
            Err(e) => Verification {
                intact: false,
                first_bad_entry: e.seq(),
                reason: Some(e.to_string()),
            },
        };
        Ok(AuditReport {
            total: self.db.audit_count().await? as usize,
            verification,
            entries: self
                .db
                .audit_newest(limit as u32)
                .await?
                .iter()
                .map(EntryView::from)
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{audit_hash, verify_audit_chain};

    pub(super) fn trail(n: i64) -> Vec<AuditEntry> {
        trail_at(&(1..=n).collect::<Vec<_>>())
    }

    /// A well-chained trail whose entries are dated as given.
    fn trail_at(times: &[i64]) -> Vec<AuditEntry> {
        let mut prev = [0u8; 32];
        (1..=times.len() as i64)
            .zip(times.iter().copied())
            .map(|(seq, at_ms)| {
                let hash = audit_hash(&prev, seq, at_ms, "a", "x", None, "{}");
                let e = AuditEntry {
                    seq,
                    at_ms,
                    actor: "a".into(),
                    action: "x".into(),
                    attempt_id: None,
                    detail: "{}".into(),
                    prev_hash: prev,
                    hash,
                };
                prev = hash;
                e
            })
            .collect()
    }

    /// A trail whose chain holds but whose time goes back (a clock set back, an entry
    /// back-dated) fails; the jitter of concurrent writers does not.
    #[test]
    fn time_that_goes_back_breaks_the_trail() {
        let minute = CLOCK_TOLERANCE_MS;
        let ok = trail_at(&[0, 10 * minute, 10 * minute - 500, 10 * minute + 1]);
        let cps: Vec<_> = ok.iter().map(|e| (e.seq, e.hash)).collect();
        assert_eq!(verify(&ok, &cps), Ok(()));
        let back = trail_at(&[0, 10 * minute, 5 * minute, 11 * minute]);
        let cps: Vec<_> = back.iter().map(|e| (e.seq, e.hash)).collect();
        assert_eq!(verify_audit_chain(&back), Ok(()));
        assert_eq!(verify(&back, &cps), Err(AuditBroken::TimeReversed(3)));
    }

    #[test]
    fn an_intact_trail_passes_and_each_tampering_names_its_first_bad_entry() {
        let t = trail(10);
        let cps: Vec<_> = t.iter().map(|e| (e.seq, e.hash)).collect();
        assert_eq!(verify(&t, &cps), Ok(()));
        // Entries written after the last checkpoint are fine (not yet checkpointed).
        assert_eq!(verify(&t, &cps[..5]), Ok(()));
        // No checkpoint at all for a trail that has entries: refused.
        assert!(matches!(verify(&t, &[]), Err(AuditBroken::Checkpoints(_))));
        assert_eq!(verify(&[], &[]), Ok(()));
        // The newest three removed: the chain still holds, the checkpoints do not.
        assert_eq!(verify(&t[..7], &cps), Err(AuditBroken::Missing(8)));
        // One entry edited in place.
        let mut edited = t.clone();
        edited[3].actor = "b".into();
        assert_eq!(verify(&edited, &cps), Err(AuditBroken::Chain(4)));
        // Rewritten from entry 4 on with every hash recomputed: the chain holds again,
        // only the checkpoint can tell.
        let mut rewritten = t.clone();
        let mut prev = rewritten[2].hash;
        for e in rewritten.iter_mut().skip(3) {
            e.actor = "b".into();
            e.prev_hash = prev;
            e.hash = audit_hash(&prev, e.seq, e.at_ms, &e.actor, &e.action, None, &e.detail);
            prev = e.hash;
        }
        assert_eq!(verify_audit_chain(&rewritten), Ok(()));
        assert_eq!(verify(&rewritten, &cps), Err(AuditBroken::Rewritten(4)));
    }

    #[tokio::test]
    async fn checkpoints_survive_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let cp = Checkpoints::new(dir.path());
        cp.record(1, [1; 32]).await.unwrap();
        cp.record(2, [2; 32]).await.unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join(CHECKPOINT_FILE))
            .unwrap()
            .write_all(b"3 abc")
            .unwrap();
        assert_eq!(cp.read().unwrap(), vec![(1, [1; 32]), (2, [2; 32])]);
        // A process starting after the crash closes the torn line before writing.
        let after = Checkpoints::new(dir.path());
        after.record(4, [4; 32]).await.unwrap();
        assert_eq!(
            after.read().unwrap(),
            vec![(1, [1; 32]), (2, [2; 32]), (4, [4; 32])]
        );
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join(CHECKPOINT_FILE))
            .unwrap()
            .write_all(b"garbage line\n")
            .unwrap();
        assert!(after.read().is_err(), "anything else malformed is an error");
    }
}
