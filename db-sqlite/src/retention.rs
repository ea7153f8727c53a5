//! Retention on SQLite: the PV decision, the facts the policy reads, claims, and the
//! one-transaction destruction of data keys.

use super::*;

type RetentionRecord = RetentionRec<String, i64>;
type PvRecord = PvRec<String, i64>;

/// A list of ids as the JSON array `json_each` reads.
fn json_ids(ids: &[AttemptId]) -> String {
    serde_json::to_string(&ids.iter().map(|i| i.to_string()).collect::<Vec<_>>())
        .expect("strings serialise")
}

#[async_trait]
impl RetentionStore for SqliteDatabase {
    async fn record_pv(
        &self,
        d: &PvDecision,
        updates: &[PvUpdate],
        event: AuditEvent,
    ) -> DbResult<PvRecorded> {
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(backend)?;
        let sitting = d.sitting_id.to_string();
        if sqlx::query_scalar!(
            r#"SELECT 1 AS "one!: i64" FROM pv_decisions WHERE sitting_id = ?1"#,
            sitting
        )
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?
        .is_some()
        {
            return Ok(PvRecorded::AlreadyDecided);
        }
        let outcome = d.outcome.as_str();
        sqlx::query!(
            "INSERT INTO pv_decisions (sitting_id, outcome, decided_at, decided_by, override_unsubmitted) VALUES (?1, ?2, ?3, ?4, ?5)",
            sitting,
            outcome,
            d.decided_at_ms,
            d.decided_by,
            d.override_unsubmitted
        )
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        for u in updates {
            let id = u.attempt.to_string();
            // An attempt the decision leaves in its state must still be in it (not started
            // meanwhile): the plan was made on that state.
            let still = if u.from == u.to {
                let state = sqlx::query_scalar!(
                    r#"SELECT state AS "state!" FROM attempts WHERE id = ?1"#,
                    id
                )
                .fetch_one(&mut *tx)
                .await
                .map_err(backend)?;
                state == u.from.as_str()
            } else {
                compare_and_set_state(&mut *tx, u.attempt, u.from, u.to, d.decided_at_ms).await?
            };
            if !still {
                return Ok(PvRecorded::Raced);
            }
            sqlx::query!(
                "UPDATE attempts SET contested = ?2, due_at = COALESCE(?3, due_at) WHERE id = ?1",
                id,
                u.contested,
                u.due_at_ms
            )
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        let events = updates
            .iter()
            .map(|u| u.event.clone())
            .chain([event])
            .collect();
        let entries = append_audits_in(&mut tx, events).await?;
        tx.commit().await.map_err(backend)?;
        Ok(PvRecorded::Recorded(entries))
    }

    async fn pv_decision(&self, sitting: SittingId) -> DbResult<Option<PvDecision>> {
        let sitting = sitting.to_string();
        let row = sqlx::query_as!(
            PvRecord,
            r#"SELECT sitting_id AS "sitting_id!", outcome AS "outcome!", decided_at AS "decided_at!", decided_by AS "decided_by!", override_unsubmitted AS "override_unsubmitted!"
               FROM pv_decisions WHERE sitting_id = ?1"#,
            sitting
        )
        .fetch_optional(&self.readers)
        .await
        .map_err(backend)?;
        row.map(parse).transpose()
    }

    async fn retention_facts(&self, ids: &[AttemptId]) -> DbResult<Vec<RetentionFacts>> {
        let ids = json_ids(ids);
        parse_all(
            sqlx::query_as!(
                RetentionRecord,
                r#"SELECT a.id AS "attempt_id!", a.sitting_id AS "sitting_id!", a.ref AS "reference!", a.ref_sealed, a.ref_is_pseudonym AS "ref_is_pseudonym!: bool", a.wrapped_dek AS "wrapped_dek!", a.state AS "state!", a.created_at AS "created_at!",
                     MAX(a.created_at, COALESCE(a.state_changed_at, 0), COALESCE((SELECT MAX(t.issued_at) FROM launch_tokens t WHERE t.attempt_id = a.id), 0)) AS "last_active_at!: i64",
                     a.ended_at,
                     p.outcome AS "pv_outcome?", p.decided_at AS "pv_decided_at?", a.contested AS "contested!", a.erasure_requested_at, a.hold_reason,
                     a.hold_lifted_at, a.due_at, a.destroyed_at, a.receipt, a.blobs_purged_at, a.kek_epoch AS "kek_epoch!", a.dek_fingerprint AS "dek_fingerprint!",
                     (SELECT COUNT(*) FROM audit x WHERE x.attempt_id = a.id AND x.action = 'attempt_exported') AS "exports!: i64"
                   FROM attempts a LEFT JOIN pv_decisions p ON p.sitting_id = a.sitting_id
                   WHERE a.id IN (SELECT value FROM json_each(?1))"#,
                ids
            )
            .fetch_all(&self.readers)
            .await
            .map_err(backend)?,
        )
    }

    async fn pending_retention(&self) -> DbResult<Vec<RetentionFacts>> {
        let ids = sqlx::query_scalar!(
            r#"SELECT id AS "id!" FROM attempts WHERE destroyed_at IS NULL ORDER BY created_at"#
        )
        .fetch_all(&self.readers)
        .await
        .map_err(backend)?;
        let ids: Vec<AttemptId> = ids
            .into_iter()
            .map(|i| i.into_id("id"))
            .collect::<Result<_, _>>()?;
        self.retention_facts(&ids).await
    }

    async fn change_retention(
        &self,
        attempt: AttemptId,
        change: RetentionChange,
        event: AuditEvent,
    ) -> DbResult<Option<AuditEntry>> {
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(backend)?;
        let id = attempt.to_string();
        let done = match &change {
            // While held, the erasure waits for the lift (which fixes the due time).
            RetentionChange::Erasure { at_ms } => sqlx::query!(
                "UPDATE attempts SET erasure_requested_at = ?2, due_at = CASE WHEN hold_reason IS NULL THEN ?2 ELSE due_at END
                 WHERE id = ?1 AND destroyed_at IS NULL AND erasure_requested_at IS NULL",
                id,
                at_ms
            )
            .execute(&mut *tx)
            .await,
            RetentionChange::Hold { reason } => {
                sqlx::query!("UPDATE attempts SET hold_reason = ?2 WHERE id = ?1 AND destroyed_at IS NULL AND hold_reason IS NULL", id, reason).execute(&mut *tx).await
            }
            RetentionChange::Lift { at_ms, due_at_ms } => sqlx::query!(
                "UPDATE attempts SET hold_reason = NULL, hold_lifted_at = ?2, due_at = ?3 WHERE id = ?1 AND hold_reason IS NOT NULL",
                id,
                at_ms,
                due_at_ms
            )
            .execute(&mut *tx)
            .await,
        }
        .map_err(backend)?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        let entry = append_audit_in(&mut tx, event).await?;
        tx.commit().await.map_err(backend)?;
        Ok(Some(entry))
    }

    async fn claim_due(
        &self,
        now_ms: i64,
        undecided_cutoff_ms: i64,
        lease_ms: i64,
        limit: u32,
    ) -> DbResult<Vec<RetentionFacts>> {
        // One writer connection and BEGIN IMMEDIATE: claimers in this process and in any
        // other on the same file take turns, so no row is claimed twice.
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(backend)?;
        let limit = limit as i64;
        let ids: Vec<String> = sqlx::query_scalar!(
            r#"SELECT id AS "id!" FROM attempts
               WHERE destroyed_at IS NULL AND hold_reason IS NULL AND (claimed_until IS NULL OR claimed_until <= ?1)
                 AND ((due_at IS NOT NULL AND due_at <= ?1) OR (due_at IS NULL AND COALESCE(ended_at, created_at) <= ?2))
               LIMIT ?3"#,
            now_ms,
            undecided_cutoff_ms,
            limit
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(backend)?;
        let ids: Vec<AttemptId> = ids
            .into_iter()
            .map(|i| i.into_id("id"))
            .collect::<Result<_, _>>()?;
        let (list, until) = (json_ids(&ids), now_ms + lease_ms);
        sqlx::query!(
            "UPDATE attempts SET claimed_until = ?2 WHERE id IN (SELECT value FROM json_each(?1))",
            list,
            until
        )
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        self.retention_facts(&ids).await
    }

    async fn destroy_attempts(&self, batch: &[Destruction]) -> DbResult<Vec<AuditEntry>> {
        // A few statements for the whole batch, whatever its size: a sweep of 100,000
        // attempts is 100 transactions, not 500,000 statements.
        let items: Vec<serde_json::Value> = batch.iter().map(|d| serde_json::json!({ "id": d.attempt.to_string(), "at": d.at_ms, "receipt": d.receipt_json, "ref": d.pseudonym })).collect();
        let items = serde_json::Value::Array(items).to_string();
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(backend)?;
        // secure_delete (set at connection) zeroes the freed bytes of the old rows.
        let destroyed: Vec<String> = sqlx::query_scalar!(
            r#"UPDATE attempts SET wrapped_dek = X'', state = 'destroyed', state_changed_at = json_extract(d.value, '$.at'), destroyed_at = json_extract(d.value, '$.at'),
                 receipt = json_extract(d.value, '$.receipt'), claimed_until = NULL,
                 last_heard_at = NULL, silent_since = NULL,
                 ref = json_extract(d.value, '$.ref'), ref_sealed = NULL, ref_is_pseudonym = 1
               FROM json_each(?1) AS d
               WHERE attempts.id = json_extract(d.value, '$.id') AND attempts.destroyed_at IS NULL AND attempts.hold_reason IS NULL
                 AND (attempts.due_at IS NULL OR attempts.due_at <= json_extract(d.value, '$.at'))
               RETURNING attempts.id AS "id!: String""#,
            items
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(backend)?;
        let ids = serde_json::to_string(&destroyed).expect("strings serialise");
        sqlx::query!("UPDATE streams SET connection = NULL, client_ip = '', agent_version = '', os = '' WHERE attempt_id IN (SELECT value FROM json_each(?1))", ids)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        // What was found dies with the recording: the flags (category, range, note) and the
        // reviews' outcomes. Who reviewed, and when, stays.
        sqlx::query!(
            "DELETE FROM flags WHERE attempt_id IN (SELECT value FROM json_each(?1))",
            ids
        )
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        sqlx::query!(
            "UPDATE reviews SET outcome = NULL WHERE attempt_id IN (SELECT value FROM json_each(?1))",
            ids
        )
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        sqlx::query!(
            "DELETE FROM agent_silences WHERE attempt_id IN (SELECT value FROM json_each(?1))",
            ids
        )
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        let destroyed: std::collections::HashSet<String> = destroyed.into_iter().collect();
        let events = batch
            .iter()
            .filter(|d| destroyed.contains(&d.attempt.to_string()))
            .map(|d| d.event.clone())
            .collect();
        let entries = append_audits_in(&mut tx, events).await?;
        tx.commit().await.map_err(backend)?;
        Ok(entries)
    }

    async fn flush_destroyed(&self) -> DbResult<bool> {
        // (busy, frames in the log, frames moved): busy means a reader kept the log.
        let (busy, _, _): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
            .fetch_one(&self.writer)
            .await
            .map_err(backend)?;
        Ok(busy == 0)
    }

    async fn unpurged(&self, recent_since_ms: i64, limit: u32) -> DbResult<Vec<AttemptId>> {
        let limit = limit as i64;
        let ids = sqlx::query_scalar!(
            r#"SELECT a.id AS "id!" FROM attempts a
               WHERE a.destroyed_at IS NOT NULL
                 AND (a.blobs_purged_at IS NULL
                      OR (a.destroyed_at >= ?1 AND EXISTS (SELECT 1 FROM chunks c JOIN streams s ON s.id = c.stream_id WHERE s.attempt_id = a.id)))
               ORDER BY a.destroyed_at LIMIT ?2"#,
            recent_since_ms,
            limit
        )
        .fetch_all(&self.readers)
        .await
        .map_err(backend)?;
        ids.into_iter()
            .map(|i| i.into_id("id").map_err(DbError::from))
            .collect()
    }

    async fn finish_purge(&self, attempts: &[AttemptId], at_ms: i64) -> DbResult<()> {
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(backend)?;
        let ids = json_ids(attempts);
        sqlx::query!("DELETE FROM chunks WHERE stream_id IN (SELECT id FROM streams WHERE attempt_id IN (SELECT value FROM json_each(?1)))", ids)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        sqlx::query!("UPDATE attempts SET blobs_purged_at = ?2 WHERE id IN (SELECT value FROM json_each(?1))", ids, at_ms).execute(&mut *tx).await.map_err(backend)?;
        tx.commit().await.map_err(backend)
    }

    async fn epochs(&self) -> DbResult<Vec<(String, u64)>> {
        let rows = sqlx::query!(
            r#"SELECT kek_epoch AS "epoch!", SUM(CASE WHEN destroyed_at IS NULL THEN 1 ELSE 0 END) AS "live!: i64" FROM attempts GROUP BY kek_epoch ORDER BY kek_epoch"#
        )
        .fetch_all(&self.readers)
        .await
        .map_err(backend)?;
        Ok(rows.into_iter().map(|r| (r.epoch, r.live as u64)).collect())
    }

    async fn connections_of(&self, attempt: AttemptId) -> DbResult<Vec<(StreamId, Vec<u8>)>> {
        let attempt = attempt.to_string();
        let rows = sqlx::query!(r#"SELECT id AS "id!", connection AS "connection!" FROM streams WHERE attempt_id = ?1 AND connection IS NOT NULL ORDER BY opened_at"#, attempt)
            .fetch_all(&self.readers)
            .await
            .map_err(backend)?;
        rows.into_iter()
            .map(|r| Ok((r.id.into_id("id").map_err(DbError::from)?, r.connection)))
            .collect()
    }

    async fn clear_references(&self, limit: u32) -> DbResult<Vec<AttemptId>> {
        let limit = limit as i64;
        let ids = sqlx::query_scalar!(
            r#"SELECT id AS "id!" FROM attempts WHERE ref_is_pseudonym = 0 LIMIT ?1"#,
            limit
        )
        .fetch_all(&self.readers)
        .await
        .map_err(backend)?;
        ids.into_iter()
            .map(|i| i.into_id("id").map_err(DbError::from))
            .collect()
    }

    async fn set_reference(&self, attempt: AttemptId, r: &StoredReference) -> DbResult<()> {
        let (id, (stored, sealed, pseudonymous)) = (attempt.to_string(), r.columns());
        sqlx::query!(
            "UPDATE attempts SET ref = ?2, ref_sealed = ?3, ref_is_pseudonym = ?4 WHERE id = ?1",
            id,
            stored,
            sealed,
            pseudonymous
        )
        .execute(&self.writer)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn clear_connections(
        &self,
        limit: u32,
    ) -> DbResult<Vec<(StreamId, AttemptId, ConnectionInfo)>> {
        let limit = limit as i64;
        let rows = sqlx::query!(
            r#"SELECT id AS "id!", attempt_id AS "attempt_id!", client_ip AS "client_ip!", agent_version AS "agent_version!", os AS "os!"
               FROM streams WHERE connection IS NULL AND client_ip <> '' LIMIT ?1"#,
            limit
        )
        .fetch_all(&self.readers)
        .await
        .map_err(backend)?;
        rows.into_iter()
            .map(|r| {
                Ok((
                    r.id.into_id("id").map_err(DbError::from)?,
                    r.attempt_id.into_id("attempt_id").map_err(DbError::from)?,
                    ConnectionInfo {
                        client_ip: r.client_ip,
                        agent_version: r.agent_version,
                        os: r.os,
                    },
                ))
            })
            .collect()
    }

    async fn seal_connection(&self, stream: StreamId, sealed: Option<Vec<u8>>) -> DbResult<()> {
        let id = stream.to_string();
        sqlx::query!("UPDATE streams SET connection = ?2, client_ip = '', agent_version = '', os = '' WHERE id = ?1", id, sealed).execute(&self.writer).await.map_err(backend)?;
        Ok(())
    }

    async fn live_keys_of_epoch(&self, epoch: &str) -> DbResult<Vec<(AttemptId, Vec<u8>)>> {
        let rows = sqlx::query!(r#"SELECT id AS "id!", wrapped_dek AS "wrapped_dek!" FROM attempts WHERE kek_epoch = ?1 AND destroyed_at IS NULL"#, epoch)
            .fetch_all(&self.readers)
            .await
            .map_err(backend)?;
        rows.into_iter()
            .map(|r| Ok((r.id.into_id("id").map_err(DbError::from)?, r.wrapped_dek)))
            .collect()
    }

    async fn rewrap(
        &self,
        attempt: AttemptId,
        old: (&str, &[u8]),
        new: (&str, &[u8]),
    ) -> DbResult<bool> {
        let id = attempt.to_string();
        let done = sqlx::query!(
            "UPDATE attempts SET kek_epoch = ?4, wrapped_dek = ?5 WHERE id = ?1 AND kek_epoch = ?2 AND wrapped_dek = ?3 AND destroyed_at IS NULL",
            id,
            old.0,
            old.1,
            new.0,
            new.1
        )
        .execute(&self.writer)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }

    async fn clear_notes(
        &self,
        sealed_prefix: &str,
        limit: u32,
    ) -> DbResult<Vec<(FlagId, AttemptId, String)>> {
        let limit = limit as i64;
        let rows = sqlx::query!(
            r#"SELECT id AS "id!", attempt_id AS "attempt_id!", note AS "note!" FROM flags WHERE note <> '' AND substr(note, 1, length(?1)) <> ?1 LIMIT ?2"#,
            sealed_prefix,
            limit
        )
        .fetch_all(&self.readers)
        .await
        .map_err(backend)?;
        rows.into_iter()
            .map(|r| {
                Ok((
                    r.id.into_id("id").map_err(DbError::from)?,
                    r.attempt_id.into_id("attempt_id").map_err(DbError::from)?,
                    r.note,
                ))
            })
            .collect()
    }

    async fn set_note(&self, flag: FlagId, note: &str) -> DbResult<()> {
        let id = flag.to_string();
        sqlx::query!("UPDATE flags SET note = ?2 WHERE id = ?1", id, note)
            .execute(&self.writer)
            .await
            .map_err(backend)?;
        Ok(())
    }
}
