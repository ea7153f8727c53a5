//! Sittings and their attempts, consent, and the audited state change on PostgreSQL.

use super::*;

#[async_trait]
impl AttemptStore for PostgresDatabase {
    async fn create_sitting(&self, id: SittingId, reference: &str, at_ms: i64) -> DbResult<()> {
        let id = id.as_uuid();
        sqlx::query!(
            "INSERT INTO sittings (id, ref, created_at) VALUES ($1, $2, $3)",
            id,
            reference,
            at_ms
        )
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }
    async fn sitting_exists(&self, id: SittingId) -> DbResult<bool> {
        let id = id.as_uuid();
        Ok(
            sqlx::query_scalar!(r#"SELECT 1 AS "one!" FROM sittings WHERE id = $1"#, id)
                .fetch_optional(&self.pool)
                .await
                .map_err(backend)?
                .is_some(),
        )
    }
    async fn create_attempt(&self, a: NewAttempt) -> DbResult<()> {
        let (reference, ref_sealed, ref_is_pseudonym) = a.reference.columns();
        let mut tx = self.pool.begin().await.map_err(backend)?;
        sqlx::query!(
            "INSERT INTO attempts (id, sitting_id, ref, kek_epoch, wrapped_dek, dek_fingerprint, created_at, ref_sealed, ref_is_pseudonym)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            a.id.as_uuid(),
            a.sitting_id.as_uuid(),
            reference,
            &a.kek_epoch,
            &a.wrapped_dek,
            &a.dek_fingerprint,
            a.created_at_ms,
            ref_sealed,
            ref_is_pseudonym
        )
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        let token_hash = a.token_hash.as_slice();
        sqlx::query!(
            "INSERT INTO launch_tokens (token_hash, attempt_id, generation, issued_at, expires_at) VALUES ($1, $2, 0, $3, $4)",
            token_hash,
            a.id.as_uuid(),
            a.created_at_ms,
            a.token_expires_at_ms
        )
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)
    }
    async fn attempt(&self, id: AttemptId) -> DbResult<Attempt> {
        let id = id.as_uuid();
        parse(sqlx::query_as!(AttemptRecord, "SELECT a.id, a.sitting_id, a.ref AS reference, a.ref_sealed, a.ref_is_pseudonym, a.kek_epoch, a.wrapped_dek, a.consent_notice, a.consent_at, a.created_at, a.state, a.ended_at, a.token_generation, a.bytes_stored FROM attempts a WHERE a.id = $1", id).fetch_one(&self.pool).await.map_err(backend)?)
    }
    async fn sitting_by_ref(&self, reference: &str) -> DbResult<SittingId> {
        sqlx::query_scalar!("SELECT id FROM sittings WHERE ref = $1", reference)
            .fetch_one(&self.pool)
            .await
            .map(SittingId::from)
            .map_err(backend)
    }
    async fn attempt_by_ref(
        &self,
        sitting: SittingId,
        reference: &str,
        pseudonymous: bool,
    ) -> DbResult<Attempt> {
        let sitting = sitting.as_uuid();
        parse(sqlx::query_as!(AttemptRecord, "SELECT a.id, a.sitting_id, a.ref AS reference, a.ref_sealed, a.ref_is_pseudonym, a.kek_epoch, a.wrapped_dek, a.consent_notice, a.consent_at, a.created_at, a.state, a.ended_at, a.token_generation, a.bytes_stored FROM attempts a WHERE a.sitting_id = $1 AND a.ref = $2 AND a.ref_is_pseudonym = $3", sitting, reference, pseudonymous).fetch_one(&self.pool).await.map_err(backend)?)
    }
    async fn record_consent(
        &self,
        attempt: AttemptId,
        notice_version: &str,
        at_ms: i64,
    ) -> DbResult<()> {
        let attempt = attempt.as_uuid();
        sqlx::query!(
            "UPDATE attempts SET consent_notice = $2, consent_at = $3 WHERE id = $1",
            attempt,
            notice_version,
            at_ms
        )
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }
    async fn attempts_of_sitting(&self, sitting: SittingId) -> DbResult<Vec<Attempt>> {
        let sitting = sitting.as_uuid();
        parse_all(sqlx::query_as!(AttemptRecord, "SELECT a.id, a.sitting_id, a.ref AS reference, a.ref_sealed, a.ref_is_pseudonym, a.kek_epoch, a.wrapped_dek, a.consent_notice, a.consent_at, a.created_at, a.state, a.ended_at, a.token_generation, a.bytes_stored FROM attempts a WHERE a.sitting_id = $1 ORDER BY a.ref", sitting).fetch_all(&self.pool).await.map_err(backend)?)
    }
    async fn set_state_audited(
        &self,
        attempt: AttemptId,
        from: AttemptState,
        to: AttemptState,
        at_ms: i64,
        event: AuditEvent,
    ) -> DbResult<Option<AuditEntry>> {
        let attempt = attempt.as_uuid();
        let mut tx = self.pool.begin().await.map_err(backend)?;
        if !compare_and_set_state(&mut *tx, attempt, from, to, at_ms).await? {
            return Ok(None);
        }
        let entry = append_audit_in(&mut tx, event).await?;
        tx.commit().await.map_err(backend)?;
        Ok(Some(entry))
    }
}

/// The attempt's state moves from `from` to `to` only if it still is `from`; `ended_at`
/// is stamped when it becomes `ended`.
pub(crate) async fn compare_and_set_state<'e, E: sqlx::Executor<'e, Database = sqlx::Postgres>>(
    db: E,
    attempt: Uuid,
    from: AttemptState,
    to: AttemptState,
    at_ms: i64,
) -> DbResult<bool> {
    let (from, to) = (from.as_str(), to.as_str());
    let done = sqlx::query!(
        "UPDATE attempts SET state = $3::text, state_changed_at = $4,
                 ended_at = CASE WHEN $3::text = 'ended' THEN $4 ELSE ended_at END
             WHERE id = $1 AND state = $2",
        attempt,
        from,
        to,
        at_ms
    )
    .execute(db)
    .await
    .map_err(backend)?;
    Ok(done.rows_affected() == 1)
}
