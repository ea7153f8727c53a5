//! Reviews, their outcomes and flags on SQLite.

use super::*;

#[async_trait]
impl ReviewStore for SqliteDatabase {
    async fn reviews_of(&self, attempt: AttemptId) -> DbResult<Vec<Review>> {
        let attempt = attempt.to_string();
        parse_all(
            sqlx::query_as!(
                ReviewRecord,
                r#"SELECT id AS "id!", attempt_id AS "attempt_id!", round AS "round!", reviewer_id AS "reviewer_id!", started_at AS "started_at!", submitted_at, outcome
                   FROM reviews WHERE attempt_id = ?1 ORDER BY round"#,
                attempt
            )
            .fetch_all(&self.readers)
            .await
            .map_err(backend)?,
        )
    }
    async fn create_review(&self, r: Review) -> DbResult<()> {
        let (id, attempt, reviewer, round) = (
            r.id.to_string(),
            r.attempt_id.to_string(),
            r.reviewer_id.to_string(),
            r.round as i64,
        );
        let outcome = r.outcome.map(|o| o.as_str());
        sqlx::query!(
            "INSERT INTO reviews (id, attempt_id, round, reviewer_id, started_at, submitted_at, outcome) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            id,
            attempt,
            round,
            reviewer,
            r.started_at_ms,
            r.submitted_at_ms,
            outcome
        )
        .execute(&self.writer)
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
        let (review, outcome_text) = (review.to_string(), outcome.as_str());
        // The single writer, in an immediate transaction: no flag write runs in between.
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(backend)?;
        let open = sqlx::query_scalar!(
            r#"SELECT submitted_at IS NULL AS "open!: bool" FROM reviews WHERE id = ?1"#,
            review
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(backend)?;
        if !open {
            return Ok(Submit::AlreadySubmitted);
        }
        let flags = sqlx::query_scalar!(
            r#"SELECT COUNT(*) AS "n!: i64" FROM flags WHERE review_id = ?1"#,
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
            "UPDATE reviews SET submitted_at = ?1, outcome = ?2 WHERE id = ?3",
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
        let attempt = attempt.to_string();
        parse_all(
            sqlx::query_as!(
                FlagRecord,
                r#"SELECT id AS "id!", review_id AS "review_id!", attempt_id AS "attempt_id!", start_at AS "start_at!", end_at AS "end_at!", category AS "category!",
                          severity AS "severity!", note AS "note!", updated_at AS "updated_at!"
                   FROM flags WHERE attempt_id = ?1 ORDER BY start_at, id"#,
                attempt
            )
            .fetch_all(&self.readers)
            .await
            .map_err(backend)?,
        )
    }
    async fn save_flag(&self, f: Flag) -> DbResult<bool> {
        let (id, review, attempt) = (
            f.id.to_string(),
            f.review_id.to_string(),
            f.attempt_id.to_string(),
        );
        let (category, severity) = (f.category.as_str(), f.severity.as_str());
        let done = sqlx::query!(
            "INSERT INTO flags (id, review_id, attempt_id, start_at, end_at, category, severity, note, updated_at)
             SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9 WHERE EXISTS (SELECT 1 FROM reviews WHERE id = ?2 AND attempt_id = ?3 AND submitted_at IS NULL)
             ON CONFLICT (id) DO UPDATE SET start_at = excluded.start_at, end_at = excluded.end_at, category = excluded.category,
                 severity = excluded.severity, note = excluded.note, updated_at = excluded.updated_at
             WHERE flags.review_id = excluded.review_id",
            id,
            review,
            attempt,
            f.start_ms,
            f.end_ms,
            category,
            severity,
            f.note,
            f.updated_at_ms
        )
        .execute(&self.writer)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }
    async fn delete_flag(&self, review: ReviewId, flag: FlagId) -> DbResult<bool> {
        let (review, flag) = (review.to_string(), flag.to_string());
        let done = sqlx::query!(
            "DELETE FROM flags WHERE id = ?1 AND review_id = ?2 AND EXISTS (SELECT 1 FROM reviews WHERE id = ?2 AND submitted_at IS NULL)",
            flag,
            review
        )
        .execute(&self.writer)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }
}
