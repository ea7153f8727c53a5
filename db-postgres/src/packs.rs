//! Packed streams on PostgreSQL.

use super::*;

/// A stream and its attempt, as the packer's lists read them.
struct StreamOf {
    attempt_id: Uuid,
    id: Uuid,
}

fn streams_of(rows: Vec<StreamOf>) -> Vec<(AttemptId, StreamId)> {
    rows.into_iter()
        .map(|r| (r.attempt_id.into(), r.id.into()))
        .collect()
}

#[async_trait]
impl PackStore for PostgresDatabase {
    async fn streams_to_pack(
        &self,
        settled_before_ms: i64,
        incomplete_before_ms: i64,
        limit: u32,
    ) -> DbResult<Vec<(AttemptId, StreamId)>> {
        let rows = sqlx::query_as!(
            StreamOf,
            r#"SELECT s.attempt_id, s.id FROM streams s JOIN attempts a ON a.id = s.attempt_id
               WHERE s.packed_at IS NULL AND a.destroyed_at IS NULL
                 AND ((s.final_index IS NOT NULL AND s.ended_at < $1
                       AND (SELECT COUNT(*) FROM chunks c WHERE c.stream_id = s.id) = s.final_index + 1)
                      OR (a.ended_at < $2 AND EXISTS (SELECT 1 FROM chunks c WHERE c.stream_id = s.id)))
               ORDER BY s.opened_at LIMIT $3"#,
            settled_before_ms,
            incomplete_before_ms,
            i64::from(limit)
        )
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        Ok(streams_of(rows))
    }

    async fn set_packed(
        &self,
        stream: StreamId,
        places: &[(u32, PackPlace)],
        at_ms: i64,
    ) -> DbResult<Packed> {
        let id = stream.as_uuid();
        let mut tx = self.pool.begin().await.map_err(backend)?;
        // The stream's row locked: a second instance packing it waits, then sees it packed.
        let state = sqlx::query!(
            "SELECT s.packed_at, a.destroyed_at FROM streams s JOIN attempts a ON a.id = s.attempt_id WHERE s.id = $1 FOR UPDATE OF s, a",
            id
        )
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?
        .ok_or(DbError::NotFound)?;
        if state.destroyed_at.is_some() {
            return Ok(Packed::Destroyed);
        }
        if state.packed_at.is_some() {
            return Ok(Packed::AlreadyPacked);
        }
        // One array per column, as the columns hold them.
        let column =
            |f: fn(&(u32, PackPlace)) -> i64| -> Vec<i64> { places.iter().map(f).collect() };
        sqlx::query!(
            "UPDATE chunks SET pack_tag = p.tag, pack_first = p.first, pack_offset = p.off
             FROM UNNEST($2::BIGINT[], $3::BIGINT[], $4::BIGINT[], $5::BIGINT[]) AS p(idx, tag, first, off)
             WHERE chunks.stream_id = $1 AND chunks.idx = p.idx",
            id,
            &column(|(i, _)| i64::from(*i)),
            &column(|(_, p)| p.columns()[0]),
            &column(|(_, p)| p.columns()[1]),
            &column(|(_, p)| p.columns()[2])
        )
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        sqlx::query!("UPDATE streams SET packed_at = $2 WHERE id = $1", id, at_ms)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(Packed::Done)
    }

    async fn loose_to_delete(
        &self,
        packed_before_ms: i64,
        limit: u32,
    ) -> DbResult<Vec<(AttemptId, StreamId)>> {
        let rows = sqlx::query_as!(
            StreamOf,
            "SELECT attempt_id, id FROM streams
             WHERE packed_at IS NOT NULL AND loose_deleted_at IS NULL AND packed_at < $1
             ORDER BY packed_at LIMIT $2",
            packed_before_ms,
            i64::from(limit)
        )
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        Ok(streams_of(rows))
    }

    async fn finish_loose(&self, stream: StreamId, at_ms: i64) -> DbResult<()> {
        sqlx::query!(
            "UPDATE streams SET loose_deleted_at = $2 WHERE id = $1 AND loose_deleted_at IS NULL",
            stream.as_uuid(),
            at_ms
        )
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }
}
