//! Sittings and their attempts, consent, and the audited state change on SQLite.

use super::*;

#[async_trait]
impl AttemptStore for SqliteDatabase {
    async fn create_sitting(&self, id: SittingId, reference: &str, at_ms: i64) -> DbResult<()> {
        let id = id.to_string();
        sqlx::query!(
            "INSERT INTO sittings (id, ref, created_at) VALUES (?1, ?2, ?3)",
            id,
            reference,
            at_ms
        )
        .execute(&self.writer)
        .await
        .map_err(backend)?;
        Ok(())
    }
    async fn sitting_exists(&self, id: SittingId) -> DbResult<bool> {
        let id = id.to_string();
        let found =
            sqlx::query_scalar!(r#"SELECT 1 AS "one!: i64" FROM sittings WHERE id = ?1"#, id)
                .fetch_optional(&self.readers)
                .await
                .map_err(backend)?;
        Ok(found.is_some())
    }
    async fn create_attempt(&self, a: NewAttempt) -> DbResult<()> {
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(backend)?;
        let (reference, ref_sealed, ref_is_pseudonym) = a.reference.columns();
        let (id, sitting_id, token_hash, kek_epoch, wrapped_dek, dek_fingerprint) = (
            a.id.to_string(),
            a.sitting_id.to_string(),
            a.token_hash.as_slice(),
            &a.kek_epoch,
            &a.wrapped_dek,
            &a.dek_fingerprint,
        );
        sqlx::query!(
            "INSERT INTO attempts (id, sitting_id, ref, token_hash, token_expires_at, kek_epoch, wrapped_dek, dek_fingerprint, created_at, ref_sealed, ref_is_pseudonym)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            id,
            sitting_id,
            reference,
            token_hash,
            a.token_expires_at_ms,
            kek_epoch,
            wrapped_dek,
            dek_fingerprint,
            a.created_at_ms,
            ref_sealed,
            ref_is_pseudonym
        )
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        let (token_hash, id) = (a.token_hash.as_slice(), a.id.to_string());
        sqlx::query!(
            "INSERT INTO launch_tokens (token_hash, attempt_id, generation, issued_at, expires_at) VALUES (?1, ?2, 0, ?3, ?4)",
            token_hash,
            id,
            a.created_at_ms,
            a.token_expires_at_ms
        )
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)
    }
    async fn attempt(&self, id: AttemptId) -> DbResult<Attempt> {
        let id = id.to_string();
        parse(sqlx::query_as!(AttemptRecord, r#"SELECT a.id AS "id!", a.sitting_id AS "sitting_id!", a.ref AS "reference!", a.ref_sealed, a.ref_is_pseudonym AS "ref_is_pseudonym!: bool", a.kek_epoch AS "kek_epoch!", a.wrapped_dek AS "wrapped_dek!", a.consent_notice, a.consent_at, a.created_at AS "created_at!", a.state AS "state!", a.ended_at, a.token_generation AS "token_generation!", a.bytes_stored AS "bytes_stored!" FROM attempts a WHERE a.id = ?1"#, id).fetch_one(&self.readers).await.map_err(backend)?)
    }
    async fn sitting_by_ref(&self, reference: &str) -> DbResult<SittingId> {
        let id = sqlx::query_scalar!(
            r#"SELECT id AS "id!" FROM sittings WHERE ref = ?1"#,
            reference
        )
        .fetch_one(&self.readers)
        .await
        .map_err(backend)?;
        id.into_id("id").map_err(DbError::from)
    }
    async fn attempt_by_ref(
        &self,
        sitting: SittingId,
        reference: &str,
        pseudonymous: bool,
    ) -> DbResult<Attempt> {
        let sitting = sitting.to_string();
        parse(sqlx::query_as!(AttemptRecord, r#"SELECT a.id AS "id!", a.sitting_id AS "sitting_id!", a.ref AS "reference!", a.ref_sealed, a.ref_is_pseudonym AS "ref_is_pseudonym!: bool", a.kek_epoch AS "kek_epoch!", a.wrapped_dek AS "wrapped_dek!", a.consent_notice, a.consent_at, a.created_at AS "created_at!", a.state AS "state!", a.ended_at, a.token_generation AS "token_generation!", a.bytes_stored AS "bytes_stored!" FROM attempts a WHERE a.sitting_id = ?1 AND a.ref = ?2 AND a.ref_is_pseudonym = ?3"#, sitting, reference, pseudonymous).fetch_one(&self.readers).await.map_err(backend)?)
    }
    async fn record_consent(
        &self,
        attempt: AttemptId,
        notice_version: &str,
        at_ms: i64,
    ) -> DbResult<()> {
        let attempt = attempt.to_string();
        sqlx::query!(
            "UPDATE attempts SET consent_notice = ?2, consent_at = ?3 WHERE id = ?1",
            attempt,
            notice_version,
            at_ms
        )
        .execute(&self.writer)
        .await
        .map_err(backend)?;
        Ok(())
    }
    async fn attempts_of_sitting(&self, sitting: SittingId) -> DbResult<Vec<Attempt>> {
        let sitting = sitting.to_string();
        parse_all(sqlx::query_as!(AttemptRecord, r#"SELECT a.id AS "id!", a.sitting_id AS "sitting_id!", a.ref AS "reference!", a.ref_sealed, a.ref_is_pseudonym AS "ref_is_pseudonym!: bool", a.kek_epoch AS "kek_epoch!", a.wrapped_dek AS "wrapped_dek!", a.consent_notice, a.consent_at, a.created_at AS "created_at!", a.state AS "state!", a.ended_at, a.token_generation AS "token_generation!", a.bytes_stored AS "bytes_stored!" FROM attempts a WHERE a.sitting_id = ?1 ORDER BY a.ref"#, sitting).fetch_all(&self.readers).await.map_err(backend)?)
    }
    async fn set_state_audited(
        &self,
        attempt: AttemptId,
        from: AttemptState,
        to: AttemptState,
        at_ms: i64,
        event: AuditEvent,
    ) -> DbResult<Option<AuditEntry>> {
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(backend)?;
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
pub(crate) async fn compare_and_set_state<'e, E: sqlx::Executor<'e, Database = sqlx::Sqlite>>(
    db: E,
    attempt: AttemptId,
    from: AttemptState,
    to: AttemptState,
    at_ms: i64,
) -> DbResult<bool> {
    let (attempt, from, to) = (attempt.to_string(), from.as_str(), to.as_str());
    let done = sqlx::query!(
        "UPDATE attempts SET state = ?3, state_changed_at = ?4, ended_at = CASE WHEN ?3 = 'ended' THEN ?4 ELSE ended_at END
         WHERE id = ?1 AND state = ?2",
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
