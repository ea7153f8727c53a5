//! Retention on PostgreSQL: the PV decision, the facts the policy reads, claims, and the
//! one-transaction destruction of data keys.

use super::*;

type RetentionRecord = RetentionRec<Uuid, bool>;
type PvRecord = PvRec<Uuid, bool>;

#[async_trait]
impl RetentionStore for PostgresDatabase {
    async fn record_pv(
        &self,
        d: &PvDecision,
        updates: &[PvUpdate],
        event: AuditEvent,
    ) -> DbResult<PvRecorded> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let inserted = sqlx::query!(
            "INSERT INTO pv_decisions (sitting_id, outcome, decided_at, decided_by, override_unsubmitted) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (sitting_id) DO NOTHING",
            d.sitting_id.as_uuid(),
            d.outcome.as_str(),
            d.decided_at_ms,
            d.decided_by,
            d.override_unsubmitted
        )
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        if inserted.rows_affected() == 0 {
            return Ok(PvRecorded::AlreadyDecided);
        }
        for u in updates {
            // An attempt the decision leaves in its state must still be in it (not started
            // meanwhile): the plan was made on that state. The row stays locked.
            let still = if u.from == u.to {
                let state = sqlx::query_scalar!(
                    "SELECT state FROM attempts WHERE id = $1 FOR UPDATE",
                    u.attempt.as_uuid()
                )
                .fetch_one(&mut *tx)
                .await
                .map_err(backend)?;
                state == u.from.as_str()
            } else {
                compare_and_set_state(&mut *tx, u.attempt.into(), u.from, u.to, d.decided_at_ms)
                    .await?
            };
            if !still {
                return Ok(PvRecorded::Raced);
            }
            sqlx::query!(
                "UPDATE attempts SET contested = $2, due_at = COALESCE($3, due_at) WHERE id = $1",
                u.attempt.as_uuid(),
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
        let sitting = sitting.as_uuid();
        let row = sqlx::query_as!(PvRecord, "SELECT sitting_id, outcome, decided_at, decided_by, override_unsubmitted FROM pv_decisions WHERE sitting_id = $1", sitting)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.map(parse).transpose()
    }

    async fn retention_facts(&self, ids: &[AttemptId]) -> DbResult<Vec<RetentionFacts>> {
        let ids = uuids(ids);
        parse_all(
            sqlx::query_as!(
                RetentionRecord,
                r#"SELECT a.id AS "attempt_id!", a.sitting_id AS "sitting_id!", a.ref AS "reference!", a.ref_sealed, a.ref_is_pseudonym AS "ref_is_pseudonym!", a.wrapped_dek AS "wrapped_dek!", a.state AS "state!", a.created_at AS "created_at!",
                     GREATEST(a.created_at, COALESCE(a.state_changed_at, 0), COALESCE((SELECT MAX(t.issued_at) FROM launch_tokens t WHERE t.attempt_id = a.id), 0)) AS "last_active_at!",
                     a.ended_at,
                     p.outcome AS "pv_outcome?", p.decided_at AS "pv_decided_at?", a.contested AS "contested!", a.erasure_requested_at, a.hold_reason,
                     a.hold_lifted_at, a.due_at, a.destroyed_at, a.receipt, a.blobs_purged_at, a.kek_epoch AS "kek_epoch!", a.dek_fingerprint AS "dek_fingerprint!",
                     (SELECT COUNT(*) FROM audit x WHERE x.attempt_id = a.id AND x.action = 'attempt_exported') AS "exports!"
                   FROM attempts a LEFT JOIN pv_decisions p ON p.sitting_id = a.sitting_id
                   WHERE a.id = ANY($1)"#,
                &ids
            )
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?,
        )
    }

    async fn pending_retention(&self) -> DbResult<Vec<RetentionFacts>> {
        let ids = sqlx::query_scalar!(
            "SELECT id FROM attempts WHERE destroyed_at IS NULL ORDER BY created_at"
        )
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        self.retention_facts(&ids_of(ids)).await
    }

    async fn change_retention(
        &self,
        attempt: AttemptId,
        change: RetentionChange,
        event: AuditEvent,
    ) -> DbResult<Option<AuditEntry>> {
        let attempt = attempt.as_uuid();
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let done = match &change {
            // While held, the erasure waits for the lift (which fixes the due time).
            RetentionChange::Erasure { at_ms } => sqlx::query!(
                "UPDATE attempts SET erasure_requested_at = $2, due_at = CASE WHEN hold_reason IS NULL THEN $2 ELSE due_at END
                 WHERE id = $1 AND destroyed_at IS NULL AND erasure_requested_at IS NULL",
                attempt,
                at_ms
            )
            .execute(&mut *tx)
            .await,
            RetentionChange::Hold { reason } => {
                sqlx::query!("UPDATE attempts SET hold_reason = $2 WHERE id = $1 AND destroyed_at IS NULL AND hold_reason IS NULL", attempt, reason).execute(&mut *tx).await
            }
            RetentionChange::Lift { at_ms, due_at_ms } => sqlx::query!(
                "UPDATE attempts SET hold_reason = NULL, hold_lifted_at = $2, due_at = $3 WHERE id = $1 AND hold_reason IS NOT NULL",
                attempt,
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
        // Rows another transaction is claiming are skipped, not waited for: claimers on
        // every instance run at once and share the work.
        let ids = sqlx::query_scalar!(
            "UPDATE attempts SET claimed_until = $1::BIGINT + $3::BIGINT WHERE id IN (
                 SELECT id FROM attempts
                 WHERE destroyed_at IS NULL AND hold_reason IS NULL AND (claimed_until IS NULL OR claimed_until <= $1)
                   AND ((due_at IS NOT NULL AND due_at <= $1) OR (due_at IS NULL AND COALESCE(ended_at, created_at) <= $2))
                 LIMIT $4
                 FOR UPDATE SKIP LOCKED)
             RETURNING id",
            now_ms,
            undecided_cutoff_ms,
            lease_ms,
            limit as i64
        )
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        self.retention_facts(&ids_of(ids)).await
    }

    async fn destroy_attempts(&self, batch: &[Destruction]) -> DbResult<Vec<AuditEntry>> {
        // A few statements for the whole batch, whatever its size.
        let ids: Vec<Uuid> = batch.iter().map(|d| d.attempt.into()).collect();
        let ats: Vec<i64> = batch.iter().map(|d| d.at_ms).collect();
        let receipts: Vec<String> = batch.iter().map(|d| d.receipt_json.clone()).collect();
        let pseudonyms: Vec<String> = batch.iter().map(|d| d.pseudonym.clone()).collect();
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let destroyed: Vec<Uuid> = sqlx::query_scalar!(
            "UPDATE attempts a SET wrapped_dek = ''::BYTEA, state = 'destroyed', state_changed_at = d.at, destroyed_at = d.at, receipt = d.receipt, claimed_until = NULL,
                 last_heard_at = NULL, silent_since = NULL, ref = d.pseudonym, ref_sealed = NULL, ref_is_pseudonym = TRUE
             FROM UNNEST($1::UUID[], $2::BIGINT[], $3::TEXT[], $4::TEXT[]) AS d(id, at, receipt, pseudonym)
             WHERE a.id = d.id AND a.destroyed_at IS NULL AND a.hold_reason IS NULL AND (a.due_at IS NULL OR a.due_at <= d.at)
             RETURNING a.id",
            &ids,
            &ats,
            &receipts,
            &pseudonyms
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(backend)?;
        sqlx::query!("UPDATE streams SET connection = NULL, client_ip = '', agent_version = '', os = '' WHERE attempt_id = ANY($1)", &destroyed)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        // What was found dies with the recording: the flags (category, range, note) and the
        // reviews' outcomes. Who reviewed, and when, stays.
        sqlx::query!("DELETE FROM flags WHERE attempt_id = ANY($1)", &destroyed)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        sqlx::query!(
            "UPDATE reviews SET outcome = NULL WHERE attempt_id = ANY($1)",
            &destroyed
        )
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        sqlx::query!(
            "DELETE FROM agent_silences WHERE attempt_id = ANY($1)",
            &destroyed
        )
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        let destroyed: std::collections::HashSet<AttemptId> =
            ids_of(destroyed).into_iter().collect();
        let events = batch
            .iter()
            .filter(|d| destroyed.contains(&d.attempt))
            .map(|d| d.event.clone())
            .collect();
        let entries = append_audits_in(&mut tx, events).await?;
        tx.commit().await.map_err(backend)?;
        Ok(entries)
    }

    async fn unpurged(&self, recent_since_ms: i64, limit: u32) -> DbResult<Vec<AttemptId>> {
        sqlx::query_scalar!(
            "SELECT a.id FROM attempts a
             WHERE a.destroyed_at IS NOT NULL
               AND (a.blobs_purged_at IS NULL
                    OR (a.destroyed_at >= $1 AND EXISTS (SELECT 1 FROM chunks c JOIN streams s ON s.id = c.stream_id WHERE s.attempt_id = a.id)))
             ORDER BY a.destroyed_at LIMIT $2",
            recent_since_ms,
            limit as i64
        )
        .fetch_all(&self.pool)
        .await
        .map(ids_of)
        .map_err(backend)
    }

    async fn finish_purge(&self, attempts: &[AttemptId], at_ms: i64) -> DbResult<()> {
        let attempts = uuids(attempts);
        let mut tx = self.pool.begin().await.map_err(backend)?;
        sqlx::query!("DELETE FROM chunks WHERE stream_id IN (SELECT id FROM streams WHERE attempt_id = ANY($1))", &attempts).execute(&mut *tx).await.map_err(backend)?;
        sqlx::query!(
            "UPDATE attempts SET blobs_purged_at = $2 WHERE id = ANY($1)",
            &attempts,
            at_ms
        )
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)
    }

    async fn epochs(&self) -> DbResult<Vec<(String, u64)>> {
        let rows = sqlx::query!(r#"SELECT kek_epoch, COUNT(*) FILTER (WHERE destroyed_at IS NULL) AS "live!" FROM attempts GROUP BY kek_epoch ORDER BY kek_epoch"#)
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        Ok(rows
            .into_iter()
            .map(|r| (r.kek_epoch, r.live as u64))
            .collect())
    }

    async fn flush_destroyed(&self) -> DbResult<bool> {
        Ok(true)
    }

    async fn connections_of(&self, attempt: AttemptId) -> DbResult<Vec<(StreamId, Vec<u8>)>> {
        let attempt = attempt.as_uuid();
        let rows = sqlx::query!(r#"SELECT id, connection AS "connection!" FROM streams WHERE attempt_id = $1 AND connection IS NOT NULL ORDER BY opened_at"#, attempt)
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        Ok(rows
            .into_iter()
            .map(|r| (r.id.into(), r.connection))
            .collect())
    }

    async fn clear_references(&self, limit: u32) -> DbResult<Vec<AttemptId>> {
        let ids = sqlx::query_scalar!(
            "SELECT id FROM attempts WHERE NOT ref_is_pseudonym LIMIT $1",
            limit as i64
        )
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        Ok(ids.into_iter().map(AttemptId::from).collect())
    }

    async fn set_reference(&self, attempt: AttemptId, r: &StoredReference) -> DbResult<()> {
        let (stored, sealed, pseudonymous) = r.columns();
        sqlx::query!(
            "UPDATE attempts SET ref = $2, ref_sealed = $3, ref_is_pseudonym = $4 WHERE id = $1",
            attempt.as_uuid(),
            stored,
            sealed,
            pseudonymous
        )
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn clear_connections(
        &self,
        limit: u32,
    ) -> DbResult<Vec<(StreamId, AttemptId, ConnectionInfo)>> {
        let rows = sqlx::query!("SELECT id, attempt_id, client_ip, agent_version, os FROM streams WHERE connection IS NULL AND client_ip <> '' LIMIT $1", limit as i64)
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        Ok(rows
            .into_iter()
            .map(|r| {
                (
                    r.id.into(),
                    r.attempt_id.into(),
                    ConnectionInfo {
                        client_ip: r.client_ip,
                        agent_version: r.agent_version,
                        os: r.os,
                    },
                )
            })
            .collect())
    }

    async fn seal_connection(&self, stream: StreamId, sealed: Option<Vec<u8>>) -> DbResult<()> {
        let stream = stream.as_uuid();
        sqlx::query!("UPDATE streams SET connection = $2, client_ip = '', agent_version = '', os = '' WHERE id = $1", stream, sealed).execute(&self.pool).await.map_err(backend)?;
        Ok(())
    }

    async fn live_keys_of_epoch(&self, epoch: &str) -> DbResult<Vec<(AttemptId, Vec<u8>)>> {
        let rows = sqlx::query!(
            "SELECT id, wrapped_dek FROM attempts WHERE kek_epoch = $1 AND destroyed_at IS NULL",
            epoch
        )
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        Ok(rows
            .into_iter()
            .map(|r| (r.id.into(), r.wrapped_dek))
            .collect())
    }

    async fn rewrap(
        &self,
        attempt: AttemptId,
        old: (&str, &[u8]),
        new: (&str, &[u8]),
    ) -> DbResult<bool> {
        let attempt = attempt.as_uuid();
        let done = sqlx::query!(
            "UPDATE attempts SET kek_epoch = $4, wrapped_dek = $5 WHERE id = $1 AND kek_epoch = $2 AND wrapped_dek = $3 AND destroyed_at IS NULL",
            attempt,
            old.0,
            old.1,
            new.0,
            new.1
        )
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }

    async fn clear_notes(
        &self,
        sealed_prefix: &str,
        limit: u32,
    ) -> DbResult<Vec<(FlagId, AttemptId, String)>> {
        let rows = sqlx::query!("SELECT id, attempt_id, note FROM flags WHERE note <> '' AND left(note, length($1)) <> $1 LIMIT $2", sealed_prefix, limit as i64)
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        Ok(rows
            .into_iter()
            .map(|r| (r.id.into(), r.attempt_id.into(), r.note))
            .collect())
    }

    async fn set_note(&self, flag: FlagId, note: &str) -> DbResult<()> {
        let flag = flag.as_uuid();
        sqlx::query!("UPDATE flags SET note = $2 WHERE id = $1", flag, note)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }
}
