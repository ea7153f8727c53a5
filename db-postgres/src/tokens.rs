//! Launch tokens (every issue, revocation) and short launch codes on PostgreSQL.

use super::*;

#[async_trait]
impl TokenStore for PostgresDatabase {
    async fn attempt_by_token(&self, token_hash: [u8; 32]) -> DbResult<(Attempt, LaunchToken)> {
        let hash = token_hash.as_slice();
        // Every authenticated request asks this: one statement, not two.
        let r = sqlx::query!(
            "SELECT a.id, a.sitting_id, a.ref AS reference, a.ref_sealed, a.ref_is_pseudonym, a.kek_epoch, a.wrapped_dek, a.consent_notice, a.consent_at, a.created_at, a.state, a.ended_at,
                    a.token_generation, a.bytes_stored, t.attempt_id, t.generation, t.expires_at, t.revoked_at
             FROM launch_tokens t JOIN attempts a ON a.id = t.attempt_id WHERE t.token_hash = $1",
            hash
        )
        .fetch_one(&self.pool)
        .await
        .map_err(backend)?;
        let token = parse(TokenRecord {
            attempt_id: r.attempt_id,
            generation: r.generation,
            expires_at: r.expires_at,
            revoked_at: r.revoked_at,
        })?;
        let attempt = parse(AttemptRecord {
            id: r.id,
            sitting_id: r.sitting_id,
            reference: r.reference,
            ref_sealed: r.ref_sealed,
            ref_is_pseudonym: r.ref_is_pseudonym,
            kek_epoch: r.kek_epoch,
            wrapped_dek: r.wrapped_dek,
            consent_notice: r.consent_notice,
            consent_at: r.consent_at,
            created_at: r.created_at,
            state: r.state,
            ended_at: r.ended_at,
            token_generation: r.token_generation,
            bytes_stored: r.bytes_stored,
        })?;
        Ok((attempt, token))
    }
    async fn token_of(&self, attempt: AttemptId, generation: u32) -> DbResult<LaunchToken> {
        let attempt = attempt.as_uuid();
        let generation = generation as i32;
        parse(
            sqlx::query_as!(
                TokenRecord,
                "SELECT t.attempt_id, t.generation, t.expires_at, t.revoked_at FROM launch_tokens t WHERE t.attempt_id = $1 AND t.generation = $2",
                attempt,
                generation
            )
            .fetch_one(&self.pool)
            .await
            .map_err(backend)?,
        )
    }
    async fn issue_token(
        &self,
        attempt: AttemptId,
        generation: u32,
        token_hash: [u8; 32],
        issued_at_ms: i64,
        expires_at_ms: i64,
    ) -> DbResult<()> {
        let attempt = attempt.as_uuid();
        let mut tx = self.pool.begin().await.map_err(backend)?;
        sqlx::query!(
            "UPDATE launch_tokens SET revoked_at = $2 WHERE attempt_id = $1 AND revoked_at IS NULL",
            attempt,
            issued_at_ms
        )
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        let (token_hash, generation) = (token_hash.as_slice(), generation as i32);
        sqlx::query!(
            "INSERT INTO launch_tokens (token_hash, attempt_id, generation, issued_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
            token_hash,
            attempt,
            generation,
            issued_at_ms,
            expires_at_ms
        )
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        let generation = generation as i32;
        sqlx::query!(
            "UPDATE attempts SET token_generation = $2 WHERE id = $1",
            attempt,
            generation
        )
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)
    }
    async fn revoke_tokens(&self, attempt: AttemptId, at_ms: i64) -> DbResult<u64> {
        let attempt = attempt.as_uuid();
        let done = sqlx::query!(
            "UPDATE launch_tokens SET revoked_at = $2 WHERE attempt_id = $1 AND revoked_at IS NULL",
            attempt,
            at_ms
        )
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected())
    }
    async fn create_launch_code(
        &self,
        code_hash: [u8; 32],
        attempt: AttemptId,
        expires_at_ms: i64,
    ) -> DbResult<()> {
        let attempt = attempt.as_uuid();
        sqlx::query!(
            "INSERT INTO launch_codes (code_hash, attempt_id, expires_at) VALUES ($1, $2, $3)",
            code_hash.as_slice(),
            attempt,
            expires_at_ms
        )
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }
    async fn redeem_launch_code(
        &self,
        code_hash: [u8; 32],
        now_ms: i64,
    ) -> DbResult<Option<AttemptId>> {
        sqlx::query_scalar!(
            "UPDATE launch_codes SET used_at = $2 WHERE code_hash = $1 AND used_at IS NULL AND expires_at > $2 RETURNING attempt_id",
            code_hash.as_slice(),
            now_ms
        )
        .fetch_optional(&self.pool)
        .await
        .map(|a| a.map(AttemptId::from))
        .map_err(backend)
    }
    async fn code_guess_lock(&self, key: &str, now_ms: i64) -> DbResult<Option<i64>> {
        let until = sqlx::query_scalar!(
            "SELECT locked_until FROM code_guesses WHERE key = $1 AND locked_until > $2",
            key,
            now_ms
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        Ok(until)
    }

    async fn code_guess_failed(
        &self,
        key: &str,
        now_ms: i64,
        window_ms: i64,
        max: u32,
        lockout_ms: i64,
    ) -> DbResult<bool> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let since = now_ms - window_ms;
        // Only entries neither counting nor locking any more: a locked one stays.
        sqlx::query!(
            "DELETE FROM code_guesses WHERE window_start < $1 AND locked_until <= $2 AND key <> $3",
            since,
            now_ms,
            key
        )
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        let failures = sqlx::query_scalar!(
            r#"INSERT INTO code_guesses (key, window_start, failures, locked_until) VALUES ($1, $2, 1, 0)
               ON CONFLICT (key) DO UPDATE SET
                 failures = CASE WHEN code_guesses.window_start < $3 THEN 1 ELSE code_guesses.failures + 1 END,
                 window_start = CASE WHEN code_guesses.window_start < $3 THEN $2 ELSE code_guesses.window_start END
               RETURNING failures AS "failures!""#,
            key,
            now_ms,
            since
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(backend)?;
        let locked = failures >= i64::from(max);
        if locked {
            let until = now_ms + lockout_ms;
            sqlx::query!(
                "UPDATE code_guesses SET locked_until = $2, failures = 0, window_start = $3 WHERE key = $1",
                key,
                until,
                now_ms
            )
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(locked)
    }
}
