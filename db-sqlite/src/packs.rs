//! Packed streams on SQLite.

use super::*;

/// A stream and its attempt, as the packer's lists read them.
struct StreamOf {
    attempt_id: String,
    id: String,
}

fn streams_of(rows: Vec<StreamOf>) -> DbResult<Vec<(AttemptId, StreamId)>> {
    rows.into_iter()
        .map(|r| Ok((r.attempt_id.into_id("attempt_id")?, r.id.into_id("id")?)))
        .collect::<Result<_, DecodeError>>()
        .map_err(DbError::from)
}

#[async_trait]
impl PackStore for SqliteDatabase {
    async fn streams_to_pack(
        &self,
        settled_before_ms: i64,
        incomplete_before_ms: i64,
        limit: u32,
    ) -> DbResult<Vec<(AttemptId, StreamId)>> {
        let limit = i64::from(limit);
        let rows = sqlx::query_as!(
            StreamOf,
            r#"SELECT s.attempt_id AS "attempt_id!", s.id AS "id!" FROM streams s JOIN attempts a ON a.id = s.attempt_id
               WHERE s.packed_at IS NULL AND a.destroyed_at IS NULL
                 AND ((s.final_index IS NOT NULL AND s.ended_at < ?1
                       AND (SELECT COUNT(*) FROM chunks c WHERE c.stream_id = s.id) = s.final_index + 1)
                      OR (a.ended_at < ?2 AND EXISTS (SELECT 1 FROM chunks c WHERE c.stream_id = s.id)))
               ORDER BY s.opened_at LIMIT ?3"#,
            settled_before_ms,
            incomplete_before_ms,
            limit
        )
        .fetch_all(&self.readers)
        .await
        .map_err(backend)?;
        streams_of(rows)
    }

    async fn set_packed(
        &self,
        stream: StreamId,
        places: &[(u32, PackPlace)],
        at_ms: i64,
    ) -> DbResult<Packed> {
        let id = stream.to_string();
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(backend)?;
        let state = sqlx::query!(
            r#"SELECT s.packed_at, a.destroyed_at FROM streams s JOIN attempts a ON a.id = s.attempt_id WHERE s.id = ?1"#,
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
        // (index, tag, first, offset), as the columns hold them.
        let places = serde_json::to_string(
            &places
                .iter()
                .map(|(i, p)| {
                    let [tag, first, offset] = p.columns();
                    (i, tag, first, offset)
                })
                .collect::<Vec<_>>(),
        )
        .expect("numbers serialise");
        sqlx::query!(
            "UPDATE chunks SET pack_tag = p.value ->> 1, pack_first = p.value ->> 2, pack_offset = p.value ->> 3
             FROM json_each(?2) AS p WHERE chunks.stream_id = ?1 AND chunks.idx = p.value ->> 0",
            id,
            places
        )
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        sqlx::query!("UPDATE streams SET packed_at = ?2 WHERE id = ?1", id, at_ms)
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
        let limit = i64::from(limit);
        let rows = sqlx::query_as!(
            StreamOf,
            r#"SELECT attempt_id AS "attempt_id!", id AS "id!" FROM streams
               WHERE packed_at IS NOT NULL AND loose_deleted_at IS NULL AND packed_at < ?1
               ORDER BY packed_at LIMIT ?2"#,
            packed_before_ms,
            limit
        )
        .fetch_all(&self.readers)
        .await
        .map_err(backend)?;
        streams_of(rows)
    }

    async fn finish_loose(&self, stream: StreamId, at_ms: i64) -> DbResult<()> {
        let id = stream.to_string();
        sqlx::query!(
            "UPDATE streams SET loose_deleted_at = ?2 WHERE id = ?1 AND loose_deleted_at IS NULL",
            id,
            at_ms
        )
        .execute(&self.writer)
        .await
        .map_err(backend)?;
        Ok(())
    }
}
