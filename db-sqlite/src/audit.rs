//! The audit trail, append-only and hash-chained on SQLite.

use super::*;

#[async_trait]
impl AuditStore for SqliteDatabase {
    async fn append_audit(&self, e: AuditEvent) -> DbResult<AuditEntry> {
        // The single writer connection serialises appenders, so two can never chain onto
        // the same predecessor; the CLI on the same file waits on SQLite's write lock.
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(backend)?;
        let entry = append_audit_in(&mut tx, e).await?;
        tx.commit().await.map_err(backend)?;
        Ok(entry)
    }
    async fn audit_of(&self, attempt: AttemptId) -> DbResult<Vec<AuditEntry>> {
        let attempt = attempt.to_string();
        parse_all(
            sqlx::query_as!(
                AuditRecord,
                r#"SELECT seq AS "seq!", at AS "at!", actor AS "actor!", action AS "action!", attempt_id, detail AS "detail!", prev_hash AS "prev_hash!", hash AS "hash!" FROM audit WHERE attempt_id = ?1 ORDER BY seq"#,
                attempt
            )
            .fetch_all(&self.readers)
            .await
            .map_err(backend)?,
        )
    }
    async fn audit_trail(&self) -> DbResult<Vec<AuditEntry>> {
        parse_all(
            sqlx::query_as!(
                AuditRecord,
                r#"SELECT seq AS "seq!", at AS "at!", actor AS "actor!", action AS "action!", attempt_id, detail AS "detail!", prev_hash AS "prev_hash!", hash AS "hash!" FROM audit ORDER BY seq"#
            )
            .fetch_all(&self.readers)
            .await
            .map_err(backend)?,
        )
    }

    async fn audit_page(&self, after: i64, limit: u32) -> DbResult<Vec<AuditEntry>> {
        let limit = i64::from(limit);
        parse_all(
            sqlx::query_as!(
                AuditRecord,
                r#"SELECT seq AS "seq!", at AS "at!", actor AS "actor!", action AS "action!", attempt_id, detail AS "detail!", prev_hash AS "prev_hash!", hash AS "hash!" FROM audit WHERE seq > ?1 ORDER BY seq LIMIT ?2"#,
                after,
                limit
            )
            .fetch_all(&self.readers)
            .await
            .map_err(backend)?,
        )
    }

    async fn audit_newest(&self, limit: u32) -> DbResult<Vec<AuditEntry>> {
        let limit = i64::from(limit);
        parse_all(
            sqlx::query_as!(
                AuditRecord,
                r#"SELECT seq AS "seq!", at AS "at!", actor AS "actor!", action AS "action!", attempt_id, detail AS "detail!", prev_hash AS "prev_hash!", hash AS "hash!" FROM audit ORDER BY seq DESC LIMIT ?1"#,
                limit
            )
            .fetch_all(&self.readers)
            .await
            .map_err(backend)?,
        )
    }

    async fn audit_count(&self) -> DbResult<u64> {
        let n = sqlx::query_scalar!(r#"SELECT COUNT(*) AS "n!: i64" FROM audit"#)
            .fetch_one(&self.readers)
            .await
            .map_err(backend)?;
        Ok(n as u64)
    }

    async fn audit_segments(&self) -> DbResult<Vec<RetiredSegment>> {
        let rows = sqlx::query!(
            r#"SELECT from_seq AS "from_seq!", up_to_seq AS "up_to_seq!", last_hash AS "last_hash!", signed AS "signed!" FROM audit_segments ORDER BY up_to_seq"#
        )
        .fetch_all(&self.readers)
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
            r#"SELECT seq AS "seq!", at AS "at!", actor AS "actor!", action AS "action!", attempt_id, detail AS "detail!", prev_hash AS "prev_hash!", hash AS "hash!" FROM audit WHERE at < ?1 ORDER BY seq DESC LIMIT 1"#,
            at_ms
        )
        .fetch_optional(&self.readers)
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
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(backend)?;
        let hash = segment.last_hash.as_slice();
        sqlx::query!(
            "INSERT INTO audit_segments (up_to_seq, from_seq, last_hash, signed) VALUES (?1, ?2, ?3, ?4)",
            segment.up_to_seq,
            segment.from_seq,
            hash,
            segment.signed
        )
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        let entry = append_audit_in(&mut tx, event).await?;
        // secure_delete (set at connection) zeroes the retired rows' bytes.
        sqlx::query!("DELETE FROM audit WHERE seq <= ?1", segment.up_to_seq)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(entry)
    }
}

pub(crate) async fn append_audit_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    e: AuditEvent,
) -> DbResult<AuditEntry> {
    append_audits_in(tx, vec![e])
        .await?
        .pop()
        .ok_or_else(|| DbError::Backend("no audit entry appended".into()))
}

/// Appends events to the chain in one statement (a destruction batch writes a thousand).
pub(crate) async fn append_audits_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    events: Vec<AuditEvent>,
) -> DbResult<Vec<AuditEntry>> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let last = sqlx::query!(
        r#"SELECT seq AS "seq!", hash AS "hash!" FROM audit ORDER BY seq DESC LIMIT 1"#
    )
    .fetch_optional(&mut **tx)
    .await
    .map_err(backend)?;
    let last = last
        .map(|r| Ok::<_, DbError>((r.seq, arr32("hash", r.hash).map_err(DbError::from)?)))
        .transpose()?;
    let entries = chain_events(last, events);
    let rows: Vec<serde_json::Value> = entries
        .iter()
        .map(|e| {
            serde_json::json!({ "seq": e.seq, "at": e.at_ms, "actor": e.actor, "action": e.action, "attempt": e.attempt_id.map(|a| a.to_string()),
                "detail": e.detail, "prev": hex::encode(e.prev_hash), "hash": hex::encode(e.hash) })
        })
        .collect();
    let rows = serde_json::Value::Array(rows).to_string();
    sqlx::query!(
        "INSERT INTO audit (seq, at, actor, action, attempt_id, detail, prev_hash, hash)
         SELECT json_extract(value, '$.seq'), json_extract(value, '$.at'), json_extract(value, '$.actor'), json_extract(value, '$.action'),
                json_extract(value, '$.attempt'), json_extract(value, '$.detail'), unhex(json_extract(value, '$.prev')), unhex(json_extract(value, '$.hash'))
         FROM json_each(?1)",
        rows
    )
    .execute(&mut **tx)
    .await
    .map_err(backend)?;
    Ok(entries)
}
