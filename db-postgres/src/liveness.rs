//! Agents' signs of life and their silences on PostgreSQL.

use super::*;

#[async_trait]
impl LivenessStore for PostgresDatabase {
    async fn agent_heard(&self, attempt: AttemptId, at_ms: i64) -> DbResult<Option<i64>> {
        let attempt = attempt.as_uuid();
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let silent: Option<i64> = sqlx::query_scalar!(
            "SELECT silent_since FROM attempts WHERE id = $1 FOR UPDATE",
            attempt
        )
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?
        .flatten();
        sqlx::query!("UPDATE attempts SET last_heard_at = GREATEST(COALESCE(last_heard_at, 0), $2), silent_since = NULL WHERE id = $1", attempt, at_ms)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        if let Some(from) = silent {
            sqlx::query!("UPDATE agent_silences SET to_ms = $3 WHERE attempt_id = $1 AND from_ms = $2 AND to_ms IS NULL", attempt, from, at_ms)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(silent)
    }
    async fn mark_silent_agents(&self, before_ms: i64) -> DbResult<Vec<(AttemptId, i64)>> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let rows = sqlx::query!(
            r#"UPDATE attempts SET silent_since = COALESCE(last_heard_at, consent_at)
               WHERE state IN ('consented', 'recording') AND silent_since IS NULL AND COALESCE(last_heard_at, consent_at) < $1
               RETURNING id, silent_since AS "since!""#,
            before_ms
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(backend)?;
        let (ids, froms): (Vec<Uuid>, Vec<i64>) = rows.iter().map(|r| (r.id, r.since)).unzip();
        sqlx::query!(
            "INSERT INTO agent_silences (attempt_id, from_ms) SELECT * FROM UNNEST($1::UUID[], $2::BIGINT[]) ON CONFLICT DO NOTHING",
            &ids,
            &froms
        )
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(ids_of(ids).into_iter().zip(froms).collect())
    }
    async fn agent_silences(&self, attempt: AttemptId) -> DbResult<Vec<(i64, Option<i64>)>> {
        let attempt = attempt.as_uuid();
        let rows = sqlx::query!(
            "SELECT from_ms, to_ms FROM agent_silences WHERE attempt_id = $1 ORDER BY from_ms",
            attempt
        )
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        Ok(rows.into_iter().map(|r| (r.from_ms, r.to_ms)).collect())
    }
}
