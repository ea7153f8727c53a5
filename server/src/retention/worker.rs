//! The retention worker: at start-up, every `sweep_interval` and at once when woken (a
//! PV validated), it destroys what the policy says is due, finishes the blob deletion of
//! anything destroyed before a crash, and destroys the key epochs no live attempt needs.
//! Attempts are claimed for a lease before they are handled, so several instances (or a
//! CLI beside a server) share the work and never handle one attempt twice at once; a
//! worker that dies leaves claims that lapse.

use super::Retention;
use super::RetentionError;
use crate::clock::{rfc3339, unix_ms};
use crate::db::AttemptId;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

/// A claimed attempt is another worker's for this long.
const LEASE: Duration = Duration::from_secs(600);
/// Attempts claimed and destroyed per transaction.
const BATCH: u32 = 1000;
/// Who destroys by rule, in receipts and the audit.
pub const WORKER: &str = "retention-worker";

#[derive(Debug, Default, Serialize)]
pub struct SweepReport {
    pub dry_run: bool,
    /// (attempt, reason) destroyed (or, in a dry run, due).
    pub destroyed: Vec<DueAttempt>,
    pub blobs_purged: u64,
    pub epochs_destroyed: Vec<String>,
    /// A destruction's old pages still in the database's log after this sweep (retried).
    pub destroyed_pages_unflushed: bool,
    /// Survivors of a spent key epoch whose re-wrap failed: each keeps its whole epoch's
    /// KEK (and so every backup of that epoch readable) until a later sweep moves it.
    pub rewrap_failed: u32,
    /// Audit entries retired past their retention by this sweep: (first, last).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit_retired: Option<(i64, i64)>,
}

#[derive(Debug, Serialize)]
pub struct DueAttempt {
    pub attempt_id: AttemptId,
    pub reason: &'static str,
}

impl Retention {
    /// One sweep. A dry run claims nothing and changes nothing.
    pub async fn sweep(&self, dry_run: bool) -> Result<SweepReport, RetentionError> {
        let now = self.clock.now();
        let mut report = SweepReport {
            dry_run,
            ..Default::default()
        };
        if dry_run {
            for f in self.db.pending_retention().await? {
                if self.policy.retention_of(&f).is_due(now) {
                    report.destroyed.push(DueAttempt {
                        attempt_id: f.attempt_id,
                        reason: super::reason(&f),
                    });
                }
            }
            return Ok(report);
        }
        // Each phase runs whatever the others met: a blob that cannot be deleted must not
        // keep keys alive, nor the other way round. The first error is reported.
        let sealed = match self.seal_clear_connections().await {
            Ok(()) => match self.seal_clear_notes().await {
                Ok(()) => self.seal_clear_references().await,
                e => e,
            },
            e => e,
        };
        let destroyed = self.destroy_due().await;
        if self.destroyed_pages_unflushed() {
            self.flush_destroyed().await;
        }
        let purged = self.purge_destroyed().await;
        let epochs = if destroyed.is_ok() {
            self.destroy_spent_epochs().await
        } else {
            Ok((Vec::new(), 0))
        };
        let retired = self.retire_audit(now).await;
        sealed?;
        report.audit_retired = retired?;
        report.destroyed = destroyed?;
        report.blobs_purged = purged?;
        (report.epochs_destroyed, report.rewrap_failed) = epochs?;
        crate::metrics::rewrap_failed(report.rewrap_failed);
        report.destroyed_pages_unflushed = self.destroyed_pages_unflushed();
        Ok(report)
    }

    /// The audit entries older than the audit retention, retired in one signed segment.
    async fn retire_audit(
        &self,
        now: time::OffsetDateTime,
    ) -> Result<Option<(i64, i64)>, RetentionError> {
        let cutoff = super::policy::sub_months(now, self.settings.audit_retention_months);
        let key = self.keys.receipt_signing_key()?;
        Ok(self.audit.retire_before(WORKER, &key, cutoff).await?)
    }

    /// The keys of every attempt due now, destroyed in batches (a transaction each).
    pub async fn destroy_due(&self) -> Result<Vec<DueAttempt>, RetentionError> {
        let now = self.clock.now();
        let cutoff = unix_ms(self.settings.ceiling.undecided_cutoff(now));
        let mut destroyed = Vec::new();
        loop {
            let claimed = self
                .db
                .claim_due(unix_ms(now), cutoff, LEASE.as_millis() as i64, BATCH)
                .await?;
            if claimed.is_empty() {
                return Ok(destroyed);
            }
            // Claimed by the database's superset filter; the policy decides exactly. Those
            // not due keep their claim until the lease lapses, so this loop ends.
            let due: Vec<_> = claimed
                .into_iter()
                .filter(|f| self.policy.retention_of(f).is_due(now))
                .collect();
            let done: std::collections::HashSet<AttemptId> = self
                .destroy_keys(&due, WORKER)
                .await?
                .iter()
                .map(|r| AttemptId::from(r.receipt.attempt_id))
                .collect();
            destroyed.extend(
                due.iter()
                    .filter(|f| done.contains(&f.attempt_id))
                    .map(|f| DueAttempt {
                        attempt_id: f.attempt_id,
                        reason: super::reason(f),
                    }),
            );
        }
    }

    /// The data key of an attempt still alive; `None` for one destroyed, or whose key is
    /// gone: what was left in clear about it is then dropped, not sealed.
    async fn live_key(
        &self,
        attempt: AttemptId,
    ) -> Result<Option<protocol::AttemptKey>, RetentionError> {
        Ok(self.live_key_of(&self.attempts.get(attempt).await?))
    }

    fn live_key_of(&self, a: &crate::db::Attempt) -> Option<protocol::AttemptKey> {
        if a.state == crate::lifecycle::AttemptState::Destroyed {
            None
        } else {
            self.keys.attempt_key(a).ok()
        }
    }

    /// Seals the connection data that versions before sealing stored in clear (once, after
    /// an upgrade): from then on no backup holds it past its attempt's key.
    async fn seal_clear_connections(&self) -> Result<(), RetentionError> {
        loop {
            let clear = self.db.clear_connections(500).await?;
            if clear.is_empty() {
                return Ok(());
            }
            for (stream, attempt, conn) in clear {
                let sealed = match self.live_key(attempt).await? {
                    Some(dek) => Some(crate::keys::seal_connection(
                        &dek, &attempt, &stream, &conn,
                    )?),
                    None => None,
                };
                self.db.seal_connection(stream, sealed).await?;
            }
        }
    }

    /// Replaces the references that versions before pseudonyms stored in clear by their
    /// pseudonym and sealed form (once, after an upgrade); a destroyed attempt's keeps only
    /// its pseudonym.
    async fn seal_clear_references(&self) -> Result<(), RetentionError> {
        loop {
            let clear = self.db.clear_references(500).await?;
            if clear.is_empty() {
                return Ok(());
            }
            for id in clear {
                let a = self.db.attempt(id).await?;
                let crate::db::StoredReference::Clear(reference) = &a.reference else {
                    continue;
                };
                let stored = match self.live_key_of(&a) {
                    Some(dek) => self
                        .keys
                        .store_reference(&dek, id, a.sitting_id, reference)?,
                    None => crate::db::StoredReference::Pseudonymous {
                        pseudonym: self.keys.reference_pseudonym(a.sitting_id, reference)?,
                        sealed: None,
                    },
                };
                self.db.set_reference(id, &stored).await?;
            }
        }
    }

    /// Seals the flags' notes that versions before sealing stored in clear (once, after an
    /// upgrade).
    async fn seal_clear_notes(&self) -> Result<(), RetentionError> {
        loop {
            let clear = self.db.clear_notes(crate::keys::SEALED_NOTE, 500).await?;
            if clear.is_empty() {
                return Ok(());
            }
            for (flag, attempt, note) in clear {
                let sealed = match self.live_key(attempt).await? {
                    Some(dek) => crate::keys::seal_note(&dek, &attempt, &flag, &note)?,
                    None => String::new(),
                };
                self.db.set_note(flag, &sealed).await?;
            }
        }
    }

    /// Destroys the KEK of every epoch (a day by default) before the previous one. The
    /// attempts of that epoch still alive (held, disputed, enrolled long before their exam)
    /// first move under the current epoch's KEK: one survivor must not keep a whole
    /// epoch's destroyed attempts readable in the backups taken before their destruction. Returns the epochs destroyed
    /// and how many survivors failed to move (retried at every sweep).
    async fn destroy_spent_epochs(&self) -> Result<(Vec<String>, u32), RetentionError> {
        // Only epochs before the previous one: an instance whose clock lags, or an attempt
        // created at an epoch's turn, may still wrap a key under the previous epoch's KEK.
        let now = self.clock.now();
        let previous = self.keys.epoch_length().oldest_kept(now);
        let past: Vec<String> = self
            .keys
            .epochs()?
            .into_iter()
            .filter(|e| *e < previous)
            .collect();
        let mut failed = 0;
        for epoch in &past {
            failed += self.move_survivors(epoch, now).await?;
        }
        let live: std::collections::HashMap<String, u64> =
            self.db.epochs().await?.into_iter().collect();
        let mut destroyed = Vec::new();
        for epoch in past
            .into_iter()
            .filter(|e| live.get(e).copied().unwrap_or(0) == 0)
        {
            // Audited first: a crash in between leaves an audited epoch to destroy again.
            self.audit
                .record(
                    WORKER,
                    "kek_destroyed",
                    None,
                    serde_json::json!({ "epoch": epoch, "at": rfc3339(now) }),
                )
                .await?;
            self.keys.destroy_epoch(&epoch)?;
            destroyed.push(epoch);
        }
        Ok((destroyed, failed))
    }

    /// Re-wraps the live attempts of `epoch` under the current KEK, audited (a failure
    /// too); returns how many could not move.
    async fn move_survivors(
        &self,
        epoch: &str,
        now: time::OffsetDateTime,
    ) -> Result<u32, RetentionError> {
        let survivors = self.db.live_keys_of_epoch(epoch).await?;
        if survivors.is_empty() {
            return Ok(0);
        }
        let (mut moved, mut failed) = (0, Vec::new());
        for (attempt, blob) in survivors {
            let old = crate::keys::WrappedKey {
                epoch: epoch.to_owned(),
                blob,
            };
            let new = match self.keys.rewrap(&old, &attempt, now) {
                Ok(new) => new,
                // Kept where it is: its epoch then stays too, and the error is seen.
                Err(e) => {
                    tracing::error!(%attempt, epoch, error = %e, "re-wrapping a data key failed: its epoch's KEK stays; retried at the next sweep");
                    failed.push(attempt);
                    continue;
                }
            };
            // Destroyed (or moved by another instance) meanwhile: nothing to do.
            moved += u32::from(
                self.db
                    .rewrap(attempt, (&old.epoch, &old.blob), (&new.epoch, &new.blob))
                    .await?,
            );
        }
        self.audit.record(WORKER, "keys_rewrapped", None, serde_json::json!({ "from": epoch, "to": self.keys.epoch_length().epoch_of(now), "attempts": moved, "failed": failed })).await?;
        Ok(failed.len() as u32)
    }
}

/// Runs the worker until the process ends.
pub fn spawn_worker(retention: Arc<Retention>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let every = retention.settings.sweep_interval;
        loop {
            match retention.sweep(false).await {
                Ok(r)
                    if !r.destroyed.is_empty()
                        || r.blobs_purged > 0
                        || !r.epochs_destroyed.is_empty() =>
                {
                    tracing::info!(
                        destroyed = r.destroyed.len(),
                        purged = r.blobs_purged,
                        epochs = r.epochs_destroyed.len(),
                        "retention sweep"
                    )
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(error = %e, "retention sweep failed; retrying at the next one")
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = retention.wake.notified() => {}
            }
        }
    })
}
