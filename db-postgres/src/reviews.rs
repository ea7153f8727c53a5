//! Reviews, their outcomes and flags on PostgreSQL.

use super::*;

#[async_trait]
impl ReviewStore for PostgresDatabase {
    async fn reviews_of(&self, attempt: AttemptId) -> DbResult<Vec<Review>> {
        let attempt = attempt.as_uuid();
        parse_all(
            sqlx::query_as!(ReviewRecord, "SELECT id, attempt_id, round, reviewer_id, started_at, submitted_at, outcome FROM reviews WHERE attempt_id = $1 ORDER BY round", attempt)
                .fetch_all(&self.pool)
                .await
                .map_err(backend)?,
        )
    }
    async fn create_review(&self, r: Review) -> DbResult<()> {
        let round = r.round as i32;
        let outcome = r.outcome.map(|o| o.as_str());
        sqlx::query!(
            "INSERT INTO reviews (id, attempt_id, round, reviewer_id, started_at, submitted_at, outcome) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            r.id.as_uuid(),
            r.attempt_id.as_uuid(),
            round,
            r.reviewer_id.as_uuid(),
            r.started_at_ms,
            r.submitted_at_ms,
            outcome
        )
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }
    async fn submit_review(
        &self,
        review: ReviewId,
        outcome: ReviewOutcome,
        at_ms: i64,
    ) -> DbResult<Submit> {
        let review = review.as_uuid();
        let outcome_text = outcome.as_str();
        // The review row locked first (flag writes lock it too), then the flags counted on
        // a fresh snapshot: nothing changes between the count and the update.
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let open = sqlx::query_scalar!(
            r#"SELECT submitted_at IS NULL AS "open!" FROM reviews WHERE id = $1 FOR UPDATE"#,
            review
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(backend)?;
        if !open {
            return Ok(Submit::AlreadySubmitted);
        }
        let flags = sqlx::query_scalar!(
            r#"SELECT COUNT(*) AS "n!" FROM flags WHERE review_id = $1"#,
            review
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(backend)?;
        match (outcome, flags) {
            (ReviewOutcome::NoIrregularity, n) if n > 0 => return Ok(Submit::Disagrees(n as u32)),
            (ReviewOutcome::Irregularities, 0) => return Ok(Submit::Disagrees(0)),
            _ => {}
        }
        sqlx::query!(
            "UPDATE reviews SET submitted_at = $1, outcome = $2 WHERE id = $3",
            at_ms,
            outcome_text,
            review
        )
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(Submit::Submitted(flags as u32))
    }
    async fn flags_of(&self, attempt: AttemptId) -> DbResult<Vec<Flag>> {
        let attempt = attempt.as_uuid();
        parse_all(
            sqlx::query_as!(
                FlagRecord,
                "SELECT id, review_id, attempt_id, start_at, end_at, category, severity, note, updated_at FROM flags WHERE attempt_id = $1 ORDER BY start_at, id",
                attempt
            )
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?,
        )
    }
    async fn save_flag(&self, f: Flag) -> DbResult<bool> {
        let (category, severity) = (f.category.as_str(), f.severity.as_str());
        // The review row is locked (FOR UPDATE) so that a submit cannot slip between the
        // check and the write.
        let done = sqlx::query!(
            "INSERT INTO flags (id, review_id, attempt_id, start_at, end_at, category, severity, note, updated_at)
             SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9 WHERE EXISTS (SELECT 1 FROM reviews WHERE id = $2 AND attempt_id = $3 AND submitted_at IS NULL FOR UPDATE)
             ON CONFLICT (id) DO UPDATE SET start_at = excluded.start_at, end_at = excluded.end_at, category = excluded.category,
                 severity = excluded.severity, note = excluded.note, updated_at = excluded.updated_at
             WHERE flags.review_id = excluded.review_id",
            f.id.as_uuid(),
            f.review_id.as_uuid(),
            f.attempt_id.as_uuid(),
            f.start_ms,
            f.end_ms,
            category,
            severity,
            f.note,
            f.updated_at_ms
        )
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }
    async fn delete_flag(&self, review: ReviewId, flag: FlagId) -> DbResult<bool> {
        let review = review.as_uuid();
        let flag = flag.as_uuid();
        let done = sqlx::query!(
            "DELETE FROM flags WHERE id = $1 AND review_id = $2 AND EXISTS (SELECT 1 FROM reviews WHERE id = $2 AND submitted_at IS NULL FOR UPDATE)",
            flag,
            review
        )
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }
}
