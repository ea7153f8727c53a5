//! After a restore: the database may come from before destructions that happened since.
//! The tombstones beside the keys say which; every start re-applies them, with their own
//! receipts, before anything is served (`AppState::open`).

use super::worker::WORKER;
use super::Retention;
use super::RetentionError;
use crate::db::{AttemptId, AuditEvent, Destruction};

/// What a start found and did.
#[derive(Debug, Default, serde::Serialize)]
pub struct Reapplied {
    /// Attempts the database had alive although a tombstone says they were destroyed.
    pub destroyed_again: Vec<AttemptId>,
    /// Of those, the ones a legal hold in the restored database still keeps (reported,
    /// not destroyed: the DPO decides).
    pub held: Vec<AttemptId>,
}

impl Retention {
    /// Settles the intents a crash left, then destroys again every attempt a tombstone
    /// names and the database does not know as destroyed.
    pub async fn reapply_tombstones(&self) -> Result<Reapplied, RetentionError> {
        for intent in self.tombstones.pending()? {
            let ids: Vec<AttemptId> = intent.receipts().map(|(a, _)| a).collect();
            let stored: std::collections::HashMap<AttemptId, Option<String>> = self
                .db
                .retention_facts(&ids)
                .await?
                .into_iter()
                .map(|f| (f.attempt_id, f.receipt))
                .collect();
            // Destroyed with this very receipt (a racing signer's may have won instead).
            let won = intent
                .receipts()
                .filter(|(a, r)| stored.get(a).is_some_and(|s| s.as_deref() == Some(*r)))
                .map(|(a, _)| a)
                .collect();
            self.tombstones.settle(intent, &won)?;
        }
        let mut report = Reapplied::default();
        let tombstones = self.tombstones.destroyed()?;
        let ids: Vec<AttemptId> = tombstones.keys().copied().collect();
        let alive: Vec<_> = self
            .db
            .retention_facts(&ids)
            .await?
            .into_iter()
            .filter(|f| f.destroyed_at_ms.is_none())
            .collect();
        if alive.is_empty() {
            return Ok(report);
        }
        let at_ms = self.clock.now_ms();
        let mut batch = Vec::with_capacity(alive.len());
        for f in &alive {
            let receipt_json = tombstones[&f.attempt_id].clone();
            let destroyed_at = serde_json::from_str::<protocol::SignedReceipt>(&receipt_json)
                .map(|r| r.receipt.destroyed_at)
                .unwrap_or_default();
            batch.push(Destruction {
                attempt: f.attempt_id,
                pseudonym: self.keys.pseudonym_of(f.sitting_id, &f.reference)?,
                receipt_json,
                at_ms,
                event: AuditEvent {
                    at_ms,
                    actor: WORKER.into(),
                    action: "destruction_reapplied".into(),
                    attempt_id: Some(f.attempt_id),
                    detail: serde_json::json!({ "why": "the database did not know a destruction its tombstone records (restored from a backup?)", "destroyed_at": destroyed_at, "key_fingerprint": f.dek_fingerprint }),
                },
            });
        }
        let entries = self.db.destroy_attempts(&batch).await?;
        if let Some(last) = entries.last() {
            self.audit.checkpoint(last).await?;
        }
        let done: std::collections::HashSet<AttemptId> =
            entries.iter().filter_map(|e| e.attempt_id).collect();
        for f in &alive {
            if done.contains(&f.attempt_id) {
                report.destroyed_again.push(f.attempt_id);
            } else {
                tracing::error!(attempt = %f.attempt_id, "a tombstone says this attempt was destroyed, but the restored database holds it on legal hold: not destroyed again; the DPO decides");
                report.held.push(f.attempt_id);
            }
        }
        if !done.is_empty() {
            tracing::warn!(count = done.len(), "destructions re-applied from their tombstones (a database restored from before them?)");
            crate::metrics::attempts_destroyed(done.len() as u64);
            self.flush_destroyed().await;
            self.wake.notify_one();
        }
        Ok(report)
    }
}

/// The log of receipts beside the keys, checked: every signature against the server's
/// key, one chain without gap or fork, its tip where the head says.
#[derive(Debug, serde::Serialize)]
pub struct ReceiptLog {
    pub receipts: usize,
    /// Receipts signed for a destruction a hold stopped (kept so the chain has no gap).
    pub void: usize,
    /// Receipts unreadable or not signed by the server's key, as stored.
    pub invalid: Vec<String>,
    pub chain: protocol::ChainReport,
    pub head: Option<String>,
    pub whole: bool,
}

impl Retention {
    pub fn receipt_log(&self) -> Result<ReceiptLog, RetentionError> {
        let public = self.receipt_public_key()?;
        let (mut receipts, mut invalid, mut void) = (Vec::new(), Vec::new(), 0);
        for (is_void, text) in self.tombstones.log()? {
            match serde_json::from_str::<protocol::SignedReceipt>(&text)
                .ok()
                .filter(|r| protocol::verify_receipt_pinned(r, &public).is_ok())
            {
                Some(r) => {
                    void += usize::from(is_void);
                    receipts.push(r);
                }
                None => invalid.push(text),
            }
        }
        let chain = protocol::check_chain(&receipts);
        let head = self.tombstones.head()?;
        let whole = invalid.is_empty()
            && chain.is_whole()
            && chain.tips.first() == head.as_ref()
            && (chain.chained == 0) == head.is_none();
        Ok(ReceiptLog {
            receipts: receipts.len(),
            void,
            invalid,
            chain,
            head,
            whole,
        })
    }
}
