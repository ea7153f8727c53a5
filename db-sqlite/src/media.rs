//! Streams and their chunks (group commit) on SQLite.

use super::*;
use proctor_db::batch::{chunk_key, ChunkKey};
use std::collections::{HashMap, HashSet};

#[async_trait]
impl MediaStore for SqliteDatabase {
    async fn open_stream(
        &self,
        s: Stream,
        connection: Vec<u8>,
        max_streams: u64,
    ) -> DbResult<bool> {
        // One statement on the single writer: the count and the insert cannot interleave.
        // The clear connection columns of the first schema stay empty: it is sealed.
        let (id, attempt_id, max_streams) = (
            s.id.to_string(),
            s.attempt_id.to_string(),
            max_streams as i64,
        );
        let (salt, opening) = keying_columns(&s.keying);
        let done = sqlx::query!(
            "INSERT INTO streams (id, attempt_id, salt, opening, opened_at, client_ip, agent_version, os, connection)
             SELECT ?1, ?2, ?3, ?4, ?5, '', '', '', ?6 WHERE (SELECT COUNT(*) FROM streams WHERE attempt_id = ?2) < ?7
             ON CONFLICT (id) DO NOTHING",
            id,
            attempt_id,
            salt,
            opening,
            s.opened_at_ms,
            connection,
            max_streams
        )
        .execute(&self.writer)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }
    async fn stream(&self, id: StreamId) -> DbResult<Stream> {
        let id = id.to_string();
        parse(
            sqlx::query_as!(
                StreamRecord,
                r#"SELECT id AS "id!", attempt_id AS "attempt_id!", salt AS "salt!", opening, opened_at AS "opened_at!", ended_at, final_index FROM streams WHERE id = ?1"#,
                id
            )
            .fetch_one(&self.readers)
            .await
            .map_err(backend)?,
        )
    }
    async fn stream_at(&self, id: StreamId, index: u32) -> DbResult<(Stream, Option<ChunkRow>)> {
        let (id, index) = (id.to_string(), index as i64);
        parse(
            sqlx::query_as!(
                StreamAtRecord,
                r#"SELECT s.id AS "id!", s.attempt_id AS "attempt_id!", s.salt AS "salt!", s.opening, s.opened_at AS "opened_at!", s.ended_at, s.final_index,
                      c.idx AS "idx?", c.digest AS "digest?", c.prev_digest AS "prev_digest?", c.size AS "size?", c.media_start_us AS "media_start_us?",
                      c.media_end_us AS "media_end_us?", c.last AS "last?: bool", c.content_sha256 AS "content_sha256?", c.pack_tag, c.pack_first, c.pack_offset
               FROM streams s LEFT JOIN chunks c ON c.stream_id = s.id AND c.idx = ?2 WHERE s.id = ?1"#,
                id,
                index
            )
            .fetch_one(&self.readers)
            .await
            .map_err(backend)?,
        )
    }
    async fn chunks_by_transport(&self, attempt: AttemptId) -> DbResult<Vec<(Transport, u64)>> {
        let attempt = attempt.to_string();
        let rows = sqlx::query!(
            r#"SELECT c.transport AS "transport!", COUNT(*) AS "n!: i64" FROM chunks c JOIN streams s ON s.id = c.stream_id
               WHERE s.attempt_id = ?1 GROUP BY c.transport ORDER BY c.transport"#,
            attempt
        )
        .fetch_all(&self.readers)
        .await
        .map_err(backend)?;
        transport_counts(rows.into_iter().map(|r| (r.transport, r.n)))
    }
    async fn streams_of(&self, attempt: AttemptId) -> DbResult<Vec<Stream>> {
        let attempt = attempt.to_string();
        parse_all(sqlx::query_as!(StreamRecord, r#"SELECT id AS "id!", attempt_id AS "attempt_id!", salt AS "salt!", opening, opened_at AS "opened_at!", ended_at, final_index FROM streams WHERE attempt_id = ?1 ORDER BY opened_at, id"#, attempt).fetch_all(&self.readers).await.map_err(backend)?)
    }
    async fn end_stream(&self, id: StreamId, final_index: u32, at_ms: i64) -> DbResult<()> {
        let (id, final_index) = (id.to_string(), final_index as i64);
        sqlx::query!(
            "UPDATE streams SET ended_at = COALESCE(ended_at, ?3), final_index = ?2 WHERE id = ?1 AND (final_index IS NULL OR final_index = ?2)",
            id,
            final_index,
            at_ms
        )
        .execute(&self.writer)
        .await
        .map_err(backend)?;
        Ok(())
    }
    async fn insert_chunks(&self, batch: &[NewChunk], at_ms: i64) -> DbResult<Vec<ChunkInsert>> {
        // One statement, so one round trip to sqlx's SQLite thread and one implicit
        // transaction: the multi-row insert, whose trigger (migration 0018) adds each new
        // row's size to its attempt. Each round trip is a hand-off between threads that
        // costs more than the work on a loaded machine; the BEGIN, UPDATE and COMMIT this
        // replaced were three more of them. What the rows it did not insert hold is read
        // afterwards, and only when there are such rows (a replay, a conflict).
        if batch.is_empty() {
            // No statement: a multi-row insert of no rows is not SQL.
            return Ok(Vec::new());
        }
        let order = proctor_db::batch::insert_order(batch);
        let mut insert = sqlx::QueryBuilder::new(
            "INSERT INTO chunks (stream_id, idx, digest, prev_digest, size, media_start_us, media_end_us, last, content_sha256, stored_at, transport, activity, pack_tag, pack_first, pack_offset) ",
        );
        insert.push_values(order.iter().map(|&i| &batch[i]), |mut v, c| {
            let r = &c.row;
            v.push_bind(r.stream_id.to_string())
                .push_bind(i64::from(r.index))
                .push_bind(r.digest.to_vec())
                .push_bind(r.prev_digest.to_vec())
                .push_bind(r.size as i64)
                .push_bind(r.media_start_us as i64)
                .push_bind(r.media_end_us as i64)
                .push_bind(r.last)
                .push_bind(r.content_sha256.to_vec())
                .push_bind(at_ms)
                .push_bind(c.transport.as_str())
                .push_bind(c.activity.clone());
            // A chunk appended to its stream's file is packed from the start.
            let place = r.pack.map(|p| p.columns());
            for i in 0..3 {
                v.push_bind(place.map(|c| c[i]));
            }
        });
        insert.push(" ON CONFLICT DO NOTHING RETURNING stream_id, idx");
        let inserted = insert
            .build_query_as::<(String, i64)>()
            .fetch_all(&self.writer)
            .await
            .map_err(backend)?
            .into_iter()
            .map(|(s, i)| chunk_key(s, i))
            .collect::<Result<HashSet<ChunkKey>, _>>()?;
        let mut stored = HashMap::new();
        if inserted.len() < batch.len() {
            // Rows are never updated in place but by packing, which keeps their digests:
            // what is read here after the insert is what the insert met.
            let mut select = sqlx::QueryBuilder::new(
                "SELECT stream_id, idx, digest FROM chunks WHERE (stream_id, idx) IN (",
            );
            let mut keys = select.separated(", ");
            for c in batch {
                keys.push("(")
                    .push_bind_unseparated(c.row.stream_id.to_string())
                    .push_unseparated(", ")
                    .push_bind_unseparated(i64::from(c.row.index))
                    .push_unseparated(")");
            }
            select.push(")");
            stored = select
                .build_query_as::<(String, i64, Vec<u8>)>()
                .fetch_all(&self.writer)
                .await
                .map_err(backend)?
                .into_iter()
                .map(|(s, i, d)| Ok((chunk_key(s, i)?, d)))
                .collect::<Result<HashMap<ChunkKey, Vec<u8>>, DecodeError>>()?;
        }
        let (outcomes, _added) = proctor_db::batch::outcomes(batch, &order, &inserted, &stored);
        Ok(outcomes)
    }
    async fn chunk(&self, stream: StreamId, index: u32) -> DbResult<ChunkRow> {
        let (stream, index) = (stream.to_string(), index as i64);
        parse(sqlx::query_as!(ChunkRecord, r#"SELECT stream_id AS "stream_id!", idx AS "idx!", digest AS "digest!", prev_digest AS "prev_digest!", size AS "size!", media_start_us AS "media_start_us!", media_end_us AS "media_end_us!", last AS "last!: bool", content_sha256 AS "content_sha256!", pack_tag, pack_first, pack_offset FROM chunks WHERE stream_id = ?1 AND idx = ?2"#, stream, index).fetch_one(&self.readers).await.map_err(backend)?)
    }
    async fn chunks_of(&self, stream: StreamId) -> DbResult<Vec<ChunkRow>> {
        let stream = stream.to_string();
        parse_all(sqlx::query_as!(ChunkRecord, r#"SELECT stream_id AS "stream_id!", idx AS "idx!", digest AS "digest!", prev_digest AS "prev_digest!", size AS "size!", media_start_us AS "media_start_us!", media_end_us AS "media_end_us!", last AS "last!: bool", content_sha256 AS "content_sha256!", pack_tag, pack_first, pack_offset FROM chunks WHERE stream_id = ?1 ORDER BY idx"#, stream).fetch_all(&self.readers).await.map_err(backend)?)
    }

    async fn activity_of(
        &self,
        stream: StreamId,
        after: Option<u32>,
        limit: u32,
    ) -> DbResult<Vec<StoredActivity>> {
        let (stream, after, limit) = (
            stream.to_string(),
            after.map_or(0, i64::from),
            i64::from(limit),
        );
        let rows = sqlx::query!(
            r#"SELECT idx AS "idx!", media_start_us AS "media_start_us!", activity FROM chunks
               WHERE stream_id = ?1 AND idx > ?2 AND last = 0 ORDER BY idx LIMIT ?3"#,
            stream,
            after,
            limit
        )
        .fetch_all(&self.readers)
        .await
        .map_err(backend)?;
        rows.into_iter()
            .map(|r| {
                Ok(StoredActivity {
                    index: u32::try_from(r.idx)
                        .map_err(|_| DbError::Backend("chunk index out of range".into()))?,
                    media_start_us: r.media_start_us as u64,
                    sealed: r.activity,
                })
            })
            .collect()
    }
    async fn chunk_summary(&self, stream: StreamId, limit: u32) -> DbResult<ChunkSummary> {
        let (stream, limit) = (stream.to_string(), i64::from(limit));
        let totals = sqlx::query!(
            r#"SELECT COUNT(*) AS "stored!: i64", MIN(idx) AS "min_idx: i64", MAX(idx) AS "max_idx: i64",
                      MAX(CASE WHEN last THEN idx END) AS "final_idx: i64",
                      MIN(CASE WHEN idx > 0 THEN media_start_us END) AS "media_start: i64",
                      MAX(media_end_us) AS "media_end: i64",
                      MIN(stored_at) AS "first_stored: i64", MAX(stored_at) AS "last_stored: i64"
               FROM chunks WHERE stream_id = ?1"#,
            stream
        )
        .fetch_one(&self.readers)
        .await
        .map_err(backend)?;
        let missing = sqlx::query!(
            r#"SELECT prev + 1 AS "from_idx!: i64", idx - 1 AS "to_idx!: i64" FROM (
                   SELECT idx, LAG(idx, 1, -1) OVER (ORDER BY idx) AS prev FROM chunks WHERE stream_id = ?1
               ) WHERE idx > prev + 1 ORDER BY idx LIMIT ?2"#,
            stream,
            limit
        )
        .fetch_all(&self.readers)
        .await
        .map_err(backend)?;
        let broken = sqlx::query_scalar!(
            r#"SELECT idx AS "idx!: i64" FROM (
                   SELECT idx, prev_digest, LAG(idx) OVER (ORDER BY idx) AS p_idx,
                          LAG(digest) OVER (ORDER BY idx) AS p_digest
                   FROM chunks WHERE stream_id = ?1
               ) WHERE idx = p_idx + 1 AND prev_digest <> p_digest ORDER BY idx LIMIT ?2"#,
            stream,
            limit
        )
        .fetch_all(&self.readers)
        .await
        .map_err(backend)?;
        let index = |i: i64| {
            u32::try_from(i).map_err(|_| DbError::Backend("chunk index out of range".into()))
        };
        let max_index = totals.max_idx.map(index).transpose()?;
        Ok(ChunkSummary {
            stored: totals.stored as u64,
            has_init: totals.min_idx == Some(0),
            final_stored: max_index.is_some()
                && totals.final_idx.map(index).transpose()? == max_index,
            max_index,
            media_start_us: totals.media_start.map(|v| v as u64),
            media_end_us: totals.media_end.map(|v| v as u64),
            missing: missing
                .into_iter()
                .map(|r| Ok((index(r.from_idx)?, index(r.to_idx)?)))
                .collect::<DbResult<_>>()?,
            broken: broken.into_iter().map(index).collect::<DbResult<_>>()?,
            first_stored_ms: totals.first_stored,
            last_stored_ms: totals.last_stored,
        })
    }
    async fn fragment_spans(
        &self,
        stream: StreamId,
        limit: u32,
    ) -> DbResult<Vec<(u32, u64, u64, i64)>> {
        let (stream, limit) = (stream.to_string(), i64::from(limit));
        sqlx::query!(
            r#"SELECT idx AS "idx!", media_start_us AS "media_start_us!", media_end_us AS "media_end_us!", stored_at AS "stored_at!" FROM chunks WHERE stream_id = ?1 AND idx > 0 ORDER BY idx LIMIT ?2"#,
            stream,
            limit
        )
        .fetch_all(&self.readers)
        .await
        .map_err(backend)?
        .into_iter()
        .map(|r| {
            let index = u32::try_from(r.idx).map_err(|_| DbError::Backend("chunk index out of range".into()))?;
            Ok((
                index,
                r.media_start_us as u64,
                r.media_end_us as u64,
                r.stored_at,
            ))
        })
        .collect()
    }

    async fn charge_bytes(&self, attempt: AttemptId, bytes: u64) -> DbResult<()> {
        let (attempt, bytes) = (attempt.to_string(), bytes as i64);
        sqlx::query!(
            "UPDATE attempts SET bytes_stored = bytes_stored + ?2 WHERE id = ?1",
            attempt,
            bytes
        )
        .execute(&self.writer)
        .await
        .map_err(backend)?;
        Ok(())
    }
}
