//! The candidate's rights, exercised by the data protection officer: erasure on request
//! (or consent withdrawn) at once whatever the PV says; legal holds, during which nothing
//! of the attempt is modified or deleted; the access report (who saw what, when).

use super::policy::Fate;
use super::Retention;
use super::RetentionError;
use crate::clock::{from_unix_ms, rfc3339, unix_ms};
use crate::db::AttemptId;
use crate::db::{AuditEvent, RetentionChange};
use crate::failure::Failure;
use protocol::SignedReceipt;
use serde::Serialize;

/// The reason an erasure on withdrawal states, in the audit trail and the receipt.
pub(crate) const WITHDRAWAL: &str = "consent_withdrawn";

/// Consecutive views by one account closer than this make one line of the report.
const VIEWING_SESSION_GAP_MS: i64 = 10 * 60 * 1000;

/// One line of the access report.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AccessEntry {
    pub account: String,
    /// `reviewer`, `jury`, `admin`, or `system` for the server's own accounts.
    pub role: String,
    pub action: String,
    pub from: String,
    pub to: String,
    /// The recording's media time seen (ms from the stream's start), for views.
    pub media_from_ms: Option<u64>,
    pub media_to_ms: Option<u64>,
    pub count: u32,
}

impl Retention {
    /// The reason an erasure or a hold states, for an attempt not destroyed yet.
    async fn stated_reason<'a>(
        &self,
        attempt: AttemptId,
        reason: &'a str,
        what: &str,
    ) -> Result<&'a str, RetentionError> {
        let reason = reason.trim();
        if reason.is_empty() || reason.len() > 500 {
            return Err(RetentionError::ReasonMissing(what.to_owned()));
        }
        if self.policy.facts(attempt).await?.destroyed_at_ms.is_some() {
            return Err(Failure::Gone.into());
        }
        Ok(reason)
    }

    /// Erasure: recorded and carried out now (unless a legal hold stands: then at its lift).
    pub async fn erase_attempt(
        &self,
        actor: &str,
        attempt: AttemptId,
        reason: &str,
    ) -> Result<Option<SignedReceipt>, RetentionError> {
        let reason = self.stated_reason(attempt, reason, "an erasure").await?;
        let at_ms = self.clock.now_ms();
        let event = AuditEvent {
            at_ms,
            actor: actor.into(),
            action: "erasure_requested".into(),
            attempt_id: Some(attempt),
            // Pseudonymous: the text stays with whoever wrote it; the trail can check it.
            detail: serde_json::json!({ "reason_pseudonym": self.keys.pseudonym("reason", reason)? }),
        };
        if let Some(entry) = self
            .db
            .change_retention(attempt, RetentionChange::Erasure { at_ms }, event)
            .await?
        {
            self.audit.checkpoint(&entry).await?;
        }
        let f = self.policy.facts(attempt).await?;
        let receipt = self
            .destroy_keys(std::slice::from_ref(&f), actor)
            .await?
            .pop();
        self.wake.notify_one();
        Ok(receipt)
    }

    /// The candidate withdrew consent: the recording goes at once, as an erasure does (a
    /// legal hold still wins: then at its lift). The erasure is recorded before the keys
    /// go, so that a crash in between leaves it due for the next sweep.
    pub async fn erase_withdrawn(
        &self,
        attempt: AttemptId,
    ) -> Result<Option<SignedReceipt>, RetentionError> {
        self.erase_attempt("candidate", attempt, WITHDRAWAL).await
    }

    /// Places a legal hold: the worker skips the attempt, nothing of it is deleted.
    pub async fn hold_attempt(
        &self,
        actor: &str,
        attempt: AttemptId,
        reason: &str,
    ) -> Result<(), RetentionError> {
        let reason = self.stated_reason(attempt, reason, "a legal hold").await?;
        let event = AuditEvent {
            at_ms: self.clock.now_ms(),
            actor: actor.into(),
            action: "legal_hold_placed".into(),
            attempt_id: Some(attempt),
            // Pseudonymous: the text stays with whoever wrote it; the trail can check it.
            detail: serde_json::json!({ "reason_pseudonym": self.keys.pseudonym("reason", reason)? }),
        };
        match self
            .db
            .change_retention(
                attempt,
                RetentionChange::Hold {
                    reason: reason.into(),
                },
                event,
            )
            .await?
        {
            Some(entry) => self.audit.checkpoint(&entry).await.map_err(Into::into),
            None => Err(RetentionError::AlreadyOnHold),
        }
    }

    /// Lifts the hold: the 2-month clock starts again from now, unless nothing else keeps
    /// the recording (a PV validated without contesting it, an erasure asked meanwhile),
    /// which then goes at once. Returns the due time.
    pub async fn lift_hold(
        &self,
        actor: &str,
        attempt: AttemptId,
    ) -> Result<String, RetentionError> {
        let mut f = self.policy.facts(attempt).await?;
        if f.hold_reason.is_none() {
            return Err(RetentionError::NotOnHold);
        }
        let at_ms = self.clock.now_ms();
        f.hold_reason = None;
        f.hold_lifted_at_ms = Some(at_ms);
        let Fate::DestroyAt(due) = self.policy.retention_of(&f) else {
            unreachable!("not held any more")
        };
        let event = AuditEvent {
            at_ms,
            actor: actor.into(),
            action: "legal_hold_lifted".into(),
            attempt_id: Some(attempt),
            detail: serde_json::json!({ "due_at": rfc3339(due) }),
        };
        match self
            .db
            .change_retention(
                attempt,
                RetentionChange::Lift {
                    at_ms,
                    due_at_ms: unix_ms(due),
                },
                event,
            )
            .await?
        {
            Some(entry) => self.audit.checkpoint(&entry).await?,
            None => return Err(RetentionError::NotOnHold),
        }
        self.wake.notify_one();
        Ok(rfc3339(due))
    }

    /// Who accessed the attempt, when, and which part of the recording: what the
    /// candidate may ask under the right of access.
    pub async fn access_report(
        &self,
        actor: &str,
        attempt: AttemptId,
    ) -> Result<Vec<AccessEntry>, RetentionError> {
        self.attempts.get(attempt).await?;
        // Asking who accessed is itself an access to the attempt's data.
        self.audit
            .record(
                actor,
                "access_report_read",
                Some(attempt),
                serde_json::json!({}),
            )
            .await?;
        let mut roles = std::collections::HashMap::new();
        for s in self.db.list_staff().await? {
            roles.insert(s.login, s.role.as_str().to_owned());
        }
        let mut out: Vec<AccessEntry> = Vec::new();
        let mut last_at: Option<i64> = None;
        for e in self.db.audit_of(attempt).await? {
            let detail: serde_json::Value = serde_json::from_str(&e.detail).unwrap_or_default();
            let media_from = detail.get("media_from_ms").and_then(|v| v.as_u64());
            let media_to = detail
                .get("media_to_ms")
                .and_then(|v| v.as_u64())
                .or(media_from);
            let role = roles
                .get(&e.actor)
                .cloned()
                .unwrap_or_else(|| "system".into());
            let at = rfc3339(from_unix_ms(e.at_ms));
            if let Some(prev) = out.last_mut().filter(|p| {
                p.account == e.actor
                    && p.action == e.action
                    && last_at.is_some_and(|t| e.at_ms - t < VIEWING_SESSION_GAP_MS)
            }) {
                prev.to = at;
                prev.count += 1;
                prev.media_from_ms = min_opt(prev.media_from_ms, media_from);
                prev.media_to_ms = prev.media_to_ms.max(media_to);
            } else {
                out.push(AccessEntry {
                    account: e.actor,
                    role,
                    action: e.action,
                    from: at.clone(),
                    to: at,
                    media_from_ms: media_from,
                    media_to_ms: media_to,
                    count: 1,
                });
            }
            last_at = Some(e.at_ms);
        }
        Ok(out)
    }
}

fn min_opt(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
