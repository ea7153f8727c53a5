//! Crypto-shredding. First the data keys, in one transaction: the wrapped key is
//! overwritten (SQLite's `secure_delete` zeroes the old bytes, the WAL is checkpointed),
//! the receipt signed and stored, connection data and flag notes purged, each destruction
//! audited. From then on nothing of the attempt can be read, and every read answers 410.
//! Then its blobs, which are ciphertext nobody can open any more: deleted, and the chunk
//! rows with them. A crash between the two leaves an attempt destroyed and not purged,
//! which `purge_destroyed` (the worker, at start-up) finishes.

use super::Retention;
use super::RetentionError;
use crate::clock::rfc3339;
use crate::db::{AttemptId, AuditEvent, Destruction, RetentionFacts};
use crate::faults::crash_point;
use protocol::{sign_receipt, Receipt, SignedReceipt};

fn crash_during_blob_deletion() {
    crash_point("during-blob-deletion")
}

/// Attempts whose blobs are deleted before their rows are marked purged together.
const PURGE_BATCH: u32 = 200;
const PURGE_CONCURRENCY: usize = 8;

impl Retention {
    /// Destroys the data keys of these attempts now, in one transaction; `by` is the rule
    /// or the account. Returns the receipts of those it destroyed (not those already
    /// destroyed, or placed on hold meanwhile).
    pub async fn destroy_keys(
        &self,
        targets: &[RetentionFacts],
        by: &str,
    ) -> Result<Vec<SignedReceipt>, RetentionError> {
        let targets: Vec<&RetentionFacts> = targets
            .iter()
            .filter(|f| f.destroyed_at_ms.is_none())
            .collect();
        if targets.is_empty() {
            return Ok(Vec::new());
        }
        let key = self.keys.receipt_signing_key()?;
        // One signer at a time on the receipt chain (every instance and command sharing the
        // key volume), from signing to the head's move.
        let turn = self.tombstones.lock_chain().await?;
        let mut previous = self.tombstones.head()?;
        let now = self.clock.now();
        let at_ms = crate::clock::unix_ms(now);
        let mut batch = Vec::with_capacity(targets.len());
        let mut receipts = Vec::with_capacity(targets.len());
        for f in targets {
            let reason = super::reason(f);
            let receipt = sign_receipt(
                &key,
                Receipt {
                    version: protocol::RECEIPT_VERSION,
                    attempt_id: f.attempt_id.into(),
                    sitting_id: f.sitting_id.into(),
                    destroyed_at: rfc3339(now),
                    reason: reason.into(),
                    by: by.into(),
                    key_fingerprint: f.dek_fingerprint.clone(),
                    key_id: None,
                    backups_unreadable_by: Some(rfc3339(self.backups_unreadable_by(f, now))),
                    previous: previous.take(),
                },
            );
            previous = Some(protocol::receipt_hash(&receipt));
            let event = AuditEvent {
                at_ms,
                actor: by.into(),
                action: "attempt_destroyed".into(),
                attempt_id: Some(f.attempt_id),
                detail: serde_json::json!({ "reason": reason, "key_fingerprint": f.dek_fingerprint, "from": f.state }),
            };
            batch.push(Destruction {
                attempt: f.attempt_id,
                pseudonym: self.keys.pseudonym_of(f.sitting_id, &f.reference)?,
                receipt_json: serde_json::to_string(&receipt).map_err(anyhow::Error::from)?,
                at_ms,
                event,
            });
            receipts.push(receipt);
        }
        // The receipts beside the keys first, as intents: a database restored from before
        // this transaction must not bring these attempts back (`restore.rs`).
        // The head moves once every receipt it covers is durable in the log: whatever the
        // transaction does, each becomes a tombstone or a void one, never a gap.
        let intent = self
            .tombstones
            .intend(batch.iter().map(|d| (d.attempt, d.receipt_json.as_str())))?;
        if let Some(head) = &previous {
            self.tombstones.set_head(head)?;
        }
        drop(turn);
        let entries = match self.db.destroy_attempts(&batch).await {
            Ok(entries) => entries,
            Err(e) => {
                // Nothing destroyed: the receipts stay in the log as void.
                self.tombstones.settle(intent, &Default::default())?;
                return Err(e.into());
            }
        };
        let done: std::collections::HashSet<AttemptId> =
            entries.iter().filter_map(|e| e.attempt_id).collect();
        self.tombstones.settle(intent, &done)?;
        // The chain covers every entry before it: one checkpoint vouches for the batch.
        if let Some(last) = entries.last() {
            self.audit.checkpoint(last).await?;
        }
        crate::metrics::attempts_destroyed(entries.len() as u64);
        if !entries.is_empty() {
            self.flush_destroyed().await;
        }
        crash_point("after-key-delete");
        receipts.retain(|r| done.contains(&AttemptId::from(r.receipt.attempt_id)));
        Ok(receipts)
    }

    /// By when a backup taken now stops holding a readable copy of this attempt's key: its
    /// epoch's KEK is spent then, and the sweep after destroys it (survivors moved first).
    fn backups_unreadable_by(
        &self,
        f: &RetentionFacts,
        now: time::OffsetDateTime,
    ) -> time::OffsetDateTime {
        let length = self.keys.epoch_length();
        let spent = crate::keys::EpochLength::start_of_id(&f.kek_epoch)
            .map_or(now, |start| length.spent_from(start));
        spent.max(now) + self.settings.sweep_interval
    }

    /// Moves a destruction's overwritten pages out of the database's log; on failure (a reader held
    /// it, an error) says so, in the log and the metric, and leaves it to the next sweep.
    pub(super) async fn flush_destroyed(&self) {
        use std::sync::atomic::Ordering;
        let flushed = match self.db.flush_destroyed().await {
            Ok(true) => true,
            Ok(false) => {
                tracing::warn!("a destruction's overwritten pages are still in the database's log (a reader held it); retried at the next sweep");
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, "flushing a destruction's overwritten pages failed; retried at the next sweep");
                false
            }
        };
        self.unflushed.store(!flushed, Ordering::Relaxed);
        crate::metrics::destroyed_pages_unflushed(!flushed);
    }

    /// Whether a destruction's old pages still wait in the database's log.
    pub fn destroyed_pages_unflushed(&self) -> bool {
        self.unflushed.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Deletes the blobs of every destroyed attempt not purged yet; returns how many
    /// attempts it purged. Safe to run on several instances at once, and after a crash.
    pub async fn purge_destroyed(&self) -> Result<u64, RetentionError> {
        let mut purged = 0;
        // An attempt whose deletion fails is left for the next sweep, not retried in a loop,
        // and does not hold the others back.
        let mut failed: std::collections::HashSet<AttemptId> = std::collections::HashSet::new();
        let mut first_error = None;
        loop {
            // An upload in flight when its attempt was destroyed may land after the purge
            // (its token was checked before): purged again while the grace lasts.
            let since = self.clock.now_ms() - 2 * self.upload_grace.as_millis() as i64;
            let ids: Vec<_> = self
                .db
                .unpurged(since, PURGE_BATCH + failed.len() as u32)
                .await?
                .into_iter()
                .filter(|id| !failed.contains(id))
                .collect();
            if ids.is_empty() {
                return match first_error {
                    Some(e) => Err(e),
                    None => Ok(purged),
                };
            }
            let mut done = Vec::with_capacity(ids.len());
            // A few attempts at once: on S3 each is a listing and batched deletes.
            for group in ids.chunks(PURGE_CONCURRENCY) {
                let mut deletions = Vec::with_capacity(group.len());
                for id in group {
                    deletions.push(self.blobs.delete_attempt(*id, crash_during_blob_deletion));
                }
                for (id, r) in group.iter().zip(futures::future::join_all(deletions).await) {
                    match r {
                        Ok(_) => done.push(*id),
                        Err(e) => {
                            tracing::error!(attempt = %id, error = %e, "deleting a destroyed attempt's blobs failed; retried at the next sweep");
                            failed.insert(*id);
                            first_error.get_or_insert(RetentionError::from(e));
                        }
                    }
                }
            }
            if !done.is_empty() {
                self.db.finish_purge(&done, self.clock.now_ms()).await?;
                purged += done.len() as u64;
            }
        }
    }
}
