//! The audit trail, append-only and hash-chained on PostgreSQL.

use super::*;

/// The advisory lock key that serialises audit appends ("CLOEAUDT").
const AUDIT_LOCK: i64 = 0x434c_4f45_4155_4454;

#[async_trait]
impl AuditStore for PostgresDatabase {
    async fn append_audit(&self, e: AuditEvent) -> DbResult<AuditEntry> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let entry = append_audit_in(&mut tx, e).await?;
        tx.commit().await.map_err(backend)?;
        Ok(entry)
    }
    async fn audit_of(&self, attempt: AttemptId) -> DbResult<Vec<AuditEntry>> {
        let attempt = attempt.as_uuid();
        parse_all(
            sqlx::query_as!(AuditRecord, "SELECT seq, at, actor, action, attempt_id, detail, prev_hash, hash FROM audit WHERE attempt_id = $1 ORDER BY seq", attempt)
                .fetch_all(&self.pool)
                .await
                .map_err(backend)?,
        )
    }
    async fn audit_trail(&self) -> DbResult<Vec<AuditEntry>> {
        parse_all(
            sqlx::query_as!(AuditRecord, "SELECT seq, at, actor, action, attempt_id, detail, prev_hash, hash FROM audit ORDER BY seq")
                .fetch_all(&self.pool)
                .await
                .map_err(backend)?,
        )
    }

    async fn audit_page(&self, after: i64, limit: u32) -> DbResult<Vec<AuditEntry>> {
        let limit = i64::from(limit);
        parse_all(
            sqlx::query_as!(
                AuditRecord,
                r#"SELECT seq, at, actor, action, attempt_id, detail, prev_hash, hash FROM audit WHERE seq > $1 ORDER BY seq LIMIT $2"#,
                after,
                limit
            )
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?,
        )
    }

    async fn audit_newest(&self, limit: u32) -> DbResult<Vec<AuditEntry>> {
        let limit = i64::from(limit);
        parse_all(
            sqlx::query_as!(
                AuditRecord,
                r#"SELECT seq, at, actor, action, attempt_id, detail, prev_hash, hash FROM audit ORDER BY seq DESC LIMIT $1"#,
                limit
            )
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?,
        )
    }

    async fn audit_count(&self) -> DbResult<u64> {
        let n = sqlx::query_scalar!(r#"SELECT COUNT(*) AS "n!" FROM audit"#)
            .fetch_one(&self.pool)
            .await
            .map_err(backend)?;
        Ok(n as u64)
    }

    async fn audit_segments(&self) -> DbResult<Vec<RetiredSegment>> {
        let rows = sqlx::query!(
            "SELECT from_seq, up_to_seq, last_hash, signed FROM audit_segments ORDER BY up_to_seq"
        )
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.into_iter()
            .map(|r| {
                Ok(RetiredSegment {
                    from_seq: r.from_seq,
                    up_to_seq: r.up_to_seq,
                    last_hash: arr32("last_hash", r.last_hash)?,
                    signed: r.signed,
                })
            })
            .collect()
    }

    async fn last_audit_before(&self, at_ms: i64) -> DbResult<Option<AuditEntry>> {
        sqlx::query_as!(
            AuditRecord,
            "SELECT seq, at, actor, action, attempt_id, detail, prev_hash, hash FROM audit WHERE at < $1 ORDER BY seq DESC LIMIT 1",
            at_ms
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?
        .map(parse)
        .transpose()
    }

    async fn retire_audit(
        &self,
        segment: RetiredSegment,
        event: AuditEvent,
    ) -> DbResult<AuditEntry> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        sqlx::query!(
            "INSERT INTO audit_segments (up_to_seq, from_seq, last_hash, signed) VALUES ($1, $2, $3, $4)",
            segment.up_to_seq,
            segment.from_seq,
            segment.last_hash.as_slice(),
            segment.signed
        )
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        let entry = append_audit_in(&mut tx, event).await?;
        sqlx::query!("DELETE FROM audit WHERE seq <= $1", segment.up_to_seq)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(entry)
    }
}

pub(crate) async fn append_audit_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    e: AuditEvent,
) -> DbResult<AuditEntry> {
    append_audits_in(tx, vec![e])
        .await?
        .pop()
        .ok_or_else(|| DbError::Backend("no audit entry appended".into()))
}

/// Appends events to the chain in one statement (a destruction batch writes a thousand).
pub(crate) async fn append_audits_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    events: Vec<AuditEvent>,
) -> DbResult<Vec<AuditEntry>> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    // Every instance appends to one chain: one appender at a time, until commit.
    sqlx::query!("SELECT pg_advisory_xact_lock($1)", AUDIT_LOCK)
        .execute(&mut **tx)
        .await
        .map_err(backend)?;
    let last = sqlx::query!("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
        .fetch_optional(&mut **tx)
        .await
        .map_err(backend)?;
    let last = last
        .map(|r| Ok::<_, DbError>((r.seq, arr32("hash", r.hash).map_err(DbError::from)?)))
        .transpose()?;
    let entries = chain_events(last, events);
    let seqs: Vec<i64> = entries.iter().map(|e| e.seq).collect();
    let ats: Vec<i64> = entries.iter().map(|e| e.at_ms).collect();
    let actors: Vec<String> = entries.iter().map(|e| e.actor.clone()).collect();
    let actions: Vec<String> = entries.iter().map(|e| e.action.clone()).collect();
    let attempts: Vec<Option<Uuid>> = entries
        .iter()
        .map(|e| e.attempt_id.map(Uuid::from))
        .collect();
    let details: Vec<String> = entries.iter().map(|e| e.detail.clone()).collect();
    let prevs: Vec<Vec<u8>> = entries.iter().map(|e| e.prev_hash.to_vec()).collect();
    let hashes: Vec<Vec<u8>> = entries.iter().map(|e| e.hash.to_vec()).collect();
    sqlx::query!(
        "INSERT INTO audit (seq, at, actor, action, attempt_id, detail, prev_hash, hash)
         SELECT * FROM UNNEST($1::BIGINT[], $2::BIGINT[], $3::TEXT[], $4::TEXT[], $5::UUID[], $6::TEXT[], $7::BYTEA[], $8::BYTEA[])",
        &seqs,
        &ats,
        &actors,
        &actions,
        &attempts as &[Option<Uuid>],
        &details,
        &prevs,
        &hashes
    )
    .execute(&mut **tx)
    .await
    .map_err(backend)?;
    Ok(entries)
}
