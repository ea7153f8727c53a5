//! Agents' signs of life and their silences on SQLite.

use super::*;

#[async_trait]
impl LivenessStore for SqliteDatabase {
    async fn agent_heard(&self, attempt: AttemptId, at_ms: i64) -> DbResult<Option<i64>> {
        let id = attempt.to_string();
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(backend)?;
        let silent: Option<i64> =
            sqlx::query_scalar!("SELECT silent_since FROM attempts WHERE id = ?1", id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(backend)?
                .flatten();
        sqlx::query!("UPDATE attempts SET last_heard_at = MAX(COALESCE(last_heard_at, 0), ?2), silent_since = NULL WHERE id = ?1", id, at_ms)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        if let Some(from) = silent {
            sqlx::query!("UPDATE agent_silences SET to_ms = ?3 WHERE attempt_id = ?1 AND from_ms = ?2 AND to_ms IS NULL", id, from, at_ms)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(silent)
    }
    async fn mark_silent_agents(&self, before_ms: i64) -> DbResult<Vec<(AttemptId, i64)>> {
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(backend)?;
        let rows = sqlx::query!(
            r#"UPDATE attempts SET silent_since = COALESCE(last_heard_at, consent_at)
               WHERE state IN ('consented', 'recording') AND silent_since IS NULL AND COALESCE(last_heard_at, consent_at) < ?1
               RETURNING id AS "id!: String", silent_since AS "since!: i64""#,
            before_ms
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(backend)?;
        for r in &rows {
            sqlx::query!("INSERT INTO agent_silences (attempt_id, from_ms) VALUES (?1, ?2) ON CONFLICT DO NOTHING", r.id, r.since)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)?;
        rows.into_iter()
            .map(|r| {
                Ok((
                    r.id.parse()
                        .map_err(|_| DbError::Backend("attempt id".into()))?,
                    r.since,
                ))
            })
            .collect()
    }
    async fn agent_silences(&self, attempt: AttemptId) -> DbResult<Vec<(i64, Option<i64>)>> {
        let id = attempt.to_string();
        let rows = sqlx::query!(r#"SELECT from_ms AS "from_ms!", to_ms FROM agent_silences WHERE attempt_id = ?1 ORDER BY from_ms"#, id)
            .fetch_all(&self.readers)
            .await
            .map_err(backend)?;
        Ok(rows.into_iter().map(|r| (r.from_ms, r.to_ms)).collect())
    }
}
