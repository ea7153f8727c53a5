//! Streams and their chunks (group commit) on PostgreSQL.

use super::*;
use proctor_db::batch::{chunk_key, ChunkKey};
use std::collections::{HashMap, HashSet};

#[async_trait]
impl MediaStore for PostgresDatabase {
    async fn open_stream(
        &self,
        s: Stream,
        connection: Vec<u8>,
        max_streams: u64,
    ) -> DbResult<bool> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        // The attempt's row lock makes concurrent opens of one attempt take turns.
        sqlx::query_scalar!(
            r#"SELECT 1 AS "one!" FROM attempts WHERE id = $1 FOR UPDATE"#,
            s.attempt_id.as_uuid()
        )
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?;
        let n: i64 = sqlx::query_scalar!(
            r#"SELECT COUNT(*) AS "n!" FROM streams WHERE attempt_id = $1"#,
            s.attempt_id.as_uuid()
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(backend)?;
        if n as u64 >= max_streams {
            return Ok(false);
        }
        let (salt, opening) = proctor_db::records::keying_columns(&s.keying);
        let inserted = sqlx::query!(
            // The clear connection columns of the first schema stay empty: it is sealed.
            "INSERT INTO streams (id, attempt_id, salt, opening, opened_at, client_ip, agent_version, os, connection) VALUES ($1, $2, $3, $4, $5, '', '', '', $6)
             ON CONFLICT (id) DO NOTHING",
            s.id.as_uuid(),
            s.attempt_id.as_uuid(),
            salt,
            opening,
            s.opened_at_ms,
            connection
        )
        .execute(&mut *tx)
        .await
        .map_err(backend)?
        .rows_affected()
            == 1;
        tx.commit().await.map_err(backend)?;
        Ok(inserted)
    }
    async fn stream(&self, id: StreamId) -> DbResult<Stream> {
        let id = id.as_uuid();
        parse(
            sqlx::query_as!(StreamRecord, "SELECT id, attempt_id, salt, opening, opened_at, ended_at, final_index FROM streams WHERE id = $1", id)
                .fetch_one(&self.pool)
                .await
                .map_err(backend)?,
        )
    }
    async fn stream_at(&self, id: StreamId, index: u32) -> DbResult<(Stream, Option<ChunkRow>)> {
        let (id, index) = (id.as_uuid(), index as i64);
        parse(
            sqlx::query_as!(
                StreamAtRecord,
                r#"SELECT s.id, s.attempt_id, s.salt, s.opening, s.opened_at, s.ended_at, s.final_index,
                      c.idx AS "idx?", c.digest AS "digest?", c.prev_digest AS "prev_digest?", c.size AS "size?", c.media_start_us AS "media_start_us?",
                      c.media_end_us AS "media_end_us?", c.last AS "last?", c.content_sha256 AS "content_sha256?", c.pack_tag, c.pack_first, c.pack_offset
               FROM streams s LEFT JOIN chunks c ON c.stream_id = s.id AND c.idx = $2 WHERE s.id = $1"#,
                id,
                index
            )
            .fetch_one(&self.pool)
            .await
            .map_err(backend)?,
        )
    }
    async fn chunks_by_transport(&self, attempt: AttemptId) -> DbResult<Vec<(Transport, u64)>> {
        let attempt = attempt.as_uuid();
        let rows = sqlx::query!(
            r#"SELECT c.transport AS "transport!", COUNT(*) AS "n!" FROM chunks c JOIN streams s ON s.id = c.stream_id
               WHERE s.attempt_id = $1 GROUP BY c.transport ORDER BY c.transport"#,
            attempt
        )
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        transport_counts(rows.into_iter().map(|r| (r.transport, r.n)))
    }
    async fn streams_of(&self, attempt: AttemptId) -> DbResult<Vec<Stream>> {
        let attempt = attempt.as_uuid();
        parse_all(
            sqlx::query_as!(
                StreamRecord,
                "SELECT id, attempt_id, salt, opening, opened_at, ended_at, final_index FROM streams WHERE attempt_id = $1 ORDER BY opened_at, id",
                attempt
            )
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?,
        )
    }
    async fn end_stream(&self, id: StreamId, final_index: u32, at_ms: i64) -> DbResult<()> {
        let id = id.as_uuid();
        let final_index = final_index as i64;
        sqlx::query!(
            "UPDATE streams SET ended_at = COALESCE(ended_at, $3), final_index = $2 WHERE id = $1 AND (final_index IS NULL OR final_index = $2)",
            id,
            final_index,
            at_ms
        )
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }
    async fn insert_chunks(&self, batch: &[NewChunk], at_ms: i64) -> DbResult<Vec<ChunkInsert>> {
        // A fixed number of round trips, whatever the batch's size: one multi-row insert,
        // one read of what the rows it did not insert hold (if any), one lock and one
        // update of the attempts' byte counts. Rows are written in `insert_order` and
        // attempts locked by id, the same on every instance.
        if batch.is_empty() {
            // No statement: a multi-row insert of no rows is not SQL.
            return Ok(Vec::new());
        }
        let order = proctor_db::batch::insert_order(batch);
        let rows = || order.iter().map(|&i| &batch[i]);
        let num = |f: fn(&NewChunk) -> i64| -> Vec<i64> { rows().map(f).collect() };
        let bytes = |f: fn(&ChunkRow) -> &[u8; 32]| -> Vec<Vec<u8>> {
            rows().map(|c| f(&c.row).to_vec()).collect()
        };
        let stream: Vec<uuid::Uuid> = rows().map(|c| c.row.stream_id.as_uuid()).collect();
        let idx = num(|c| i64::from(c.row.index));
        let size = num(|c| c.row.size as i64);
        let start = num(|c| c.row.media_start_us as i64);
        let end = num(|c| c.row.media_end_us as i64);
        let (digest, prev, sha) = (
            bytes(|r| &r.digest),
            bytes(|r| &r.prev_digest),
            bytes(|r| &r.content_sha256),
        );
        let last: Vec<bool> = rows().map(|c| c.row.last).collect();
        let transport: Vec<String> = rows().map(|c| c.transport.as_str().to_owned()).collect();
        let activity: Vec<Option<Vec<u8>>> = rows().map(|c| c.activity.clone()).collect();
        // A chunk appended to its stream's file is packed from the start.
        let place = |i: usize| -> Vec<Option<i64>> {
            rows().map(|c| c.row.pack.map(|p| p.columns()[i])).collect()
        };
        let (tag, first, offset) = (place(0), place(1), place(2));
        let mut tx = self.pool.begin().await.map_err(backend)?;
        // The primary key arbitrates between concurrent uploads, on any instance.
        let inserted = sqlx::query!(
            r#"INSERT INTO chunks (stream_id, idx, digest, prev_digest, size, media_start_us, media_end_us, last, content_sha256, stored_at, transport, activity, pack_tag, pack_first, pack_offset)
               SELECT r.stream_id, r.idx, r.digest, r.prev_digest, r.size, r.media_start_us, r.media_end_us, r.last, r.content_sha256, $12, r.transport, r.activity, r.pack_tag, r.pack_first, r.pack_offset
               FROM UNNEST($1::uuid[], $2::bigint[], $3::bytea[], $4::bytea[], $5::bigint[], $6::bigint[], $7::bigint[], $8::bool[], $9::bytea[], $10::text[], $11::bytea[], $13::bigint[], $14::bigint[], $15::bigint[])
                    WITH ORDINALITY AS r(stream_id, idx, digest, prev_digest, size, media_start_us, media_end_us, last, content_sha256, transport, activity, pack_tag, pack_first, pack_offset, n)
               ORDER BY r.n
               ON CONFLICT (stream_id, idx) DO NOTHING
               RETURNING stream_id, idx"#,
            &stream,
            &idx,
            &digest,
            &prev,
            &size,
            &start,
            &end,
            &last,
            &sha,
            &transport,
            &activity as &[Option<Vec<u8>>],
            at_ms,
            &tag as &[Option<i64>],
            &first as &[Option<i64>],
            &offset as &[Option<i64>]
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(backend)?
        .into_iter()
        .map(|r| chunk_key(r.stream_id, r.idx))
        .collect::<Result<HashSet<ChunkKey>, _>>()?;
        let mut stored = HashMap::new();
        if inserted.len() < batch.len() {
            stored = sqlx::query!(
                "SELECT c.stream_id, c.idx, c.digest FROM chunks c
                 JOIN UNNEST($1::uuid[], $2::bigint[]) AS k(stream_id, idx)
                   ON c.stream_id = k.stream_id AND c.idx = k.idx",
                &stream,
                &idx
            )
            .fetch_all(&mut *tx)
            .await
            .map_err(backend)?
            .into_iter()
            .map(|r| Ok((chunk_key(r.stream_id, r.idx)?, r.digest)))
            .collect::<Result<HashMap<ChunkKey, Vec<u8>>, DecodeError>>()?;
        }
        let (outcomes, added) = proctor_db::batch::outcomes(batch, &order, &inserted, &stored);
        if !added.is_empty() {
            let (ids, bytes): (Vec<uuid::Uuid>, Vec<i64>) = added
                .into_iter()
                .map(|(a, b)| (a.as_uuid(), b as i64))
                .unzip();
            // Locked in id order first: the update's join has no order to rely on.
            sqlx::query!(
                "SELECT id FROM attempts WHERE id = ANY($1) ORDER BY id FOR UPDATE",
                &ids
            )
            .fetch_all(&mut *tx)
            .await
            .map_err(backend)?;
            sqlx::query!(
                "UPDATE attempts a SET bytes_stored = a.bytes_stored + d.bytes
                 FROM UNNEST($1::uuid[], $2::bigint[]) AS d(id, bytes) WHERE a.id = d.id",
                &ids,
                &bytes
            )
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(outcomes)
    }
    async fn chunk(&self, stream: StreamId, index: u32) -> DbResult<ChunkRow> {
        let stream = stream.as_uuid();
        let index = index as i64;
        parse(
            sqlx::query_as!(
                ChunkRecord,
                "SELECT stream_id, idx, digest, prev_digest, size, media_start_us, media_end_us, last, content_sha256, pack_tag, pack_first, pack_offset FROM chunks WHERE stream_id = $1 AND idx = $2",
                stream,
                index
            )
            .fetch_one(&self.pool)
            .await
            .map_err(backend)?,
        )
    }
    async fn chunks_of(&self, stream: StreamId) -> DbResult<Vec<ChunkRow>> {
        let stream = stream.as_uuid();
        parse_all(
            sqlx::query_as!(
                ChunkRecord,
                "SELECT stream_id, idx, digest, prev_digest, size, media_start_us, media_end_us, last, content_sha256, pack_tag, pack_first, pack_offset FROM chunks WHERE stream_id = $1 ORDER BY idx",
                stream
            )
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?,
        )
    }

    async fn activity_of(
        &self,
        stream: StreamId,
        after: Option<u32>,
        limit: u32,
    ) -> DbResult<Vec<StoredActivity>> {
        let (after, limit) = (after.map_or(0, i64::from), i64::from(limit));
        let rows = sqlx::query!(
            "SELECT idx, media_start_us, activity FROM chunks
             WHERE stream_id = $1 AND idx > $2 AND NOT last ORDER BY idx LIMIT $3",
            stream.as_uuid(),
            after,
            limit
        )
        .fetch_all(&self.pool)
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
        let (stream, limit) = (stream.as_uuid(), i64::from(limit));
        let totals = sqlx::query!(
            r#"SELECT COUNT(*) AS "stored!", MIN(idx) AS min_idx, MAX(idx) AS max_idx,
                      MAX(CASE WHEN last THEN idx END) AS final_idx,
                      MIN(CASE WHEN idx > 0 THEN media_start_us END) AS media_start,
                      MAX(media_end_us) AS media_end,
                      MIN(stored_at) AS first_stored, MAX(stored_at) AS last_stored
               FROM chunks WHERE stream_id = $1"#,
            stream
        )
        .fetch_one(&self.pool)
        .await
        .map_err(backend)?;
        let missing = sqlx::query!(
            r#"SELECT prev + 1 AS "from_idx!", idx - 1 AS "to_idx!" FROM (
                   SELECT idx, LAG(idx, 1, -1::BIGINT) OVER (ORDER BY idx) AS prev FROM chunks WHERE stream_id = $1
               ) gaps WHERE idx > prev + 1 ORDER BY idx LIMIT $2"#,
            stream,
            limit
        )
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        let broken = sqlx::query_scalar!(
            r#"SELECT idx AS "idx!" FROM (
                   SELECT idx, prev_digest, LAG(idx) OVER (ORDER BY idx) AS p_idx,
                          LAG(digest) OVER (ORDER BY idx) AS p_digest
                   FROM chunks WHERE stream_id = $1
               ) links WHERE idx = p_idx + 1 AND prev_digest <> p_digest ORDER BY idx LIMIT $2"#,
            stream,
            limit
        )
        .fetch_all(&self.pool)
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
        let (stream, limit) = (stream.as_uuid(), i64::from(limit));
        sqlx::query!(
            "SELECT idx, media_start_us, media_end_us, stored_at FROM chunks WHERE stream_id = $1 AND idx > 0 ORDER BY idx LIMIT $2",
            stream,
            limit
        )
        .fetch_all(&self.pool)
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
        let (attempt, bytes) = (attempt.as_uuid(), bytes as i64);
        sqlx::query!(
            "UPDATE attempts SET bytes_stored = bytes_stored + $2 WHERE id = $1",
            attempt,
            bytes
        )
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }
}
