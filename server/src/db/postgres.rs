//! PostgreSQL backend on `sqlx`, for several server instances on one database. A commit is
//! durable before we acknowledge (the server's default `synchronous_commit = on`); audit
//! appenders are serialised across instances by a transaction-scoped advisory lock;
//! every statement has a timeout.

use super::*;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::Row;
use std::str::FromStr;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

/// The advisory lock key that serialises audit appends ("CLOEAUDT").
const AUDIT_LOCK: i64 = 0x434c_4f45_4155_4454;

#[derive(Clone)]
pub struct PostgresDatabase {
    pool: PgPool,
}

fn arr32(r: &PgRow, col: &str) -> Result<[u8; 32], sqlx::Error> {
    let v: Vec<u8> = r.try_get(col)?;
    v.try_into().map_err(|_| sqlx::Error::ColumnDecode { index: col.into(), source: "expected 32 bytes".into() })
}

fn decode_err(col: &str, e: String) -> sqlx::Error {
    sqlx::Error::ColumnDecode { index: col.into(), source: e.into() }
}

impl PostgresDatabase {
    pub async fn connect(url: &str, pool: &PoolSettings) -> DbResult<Self> {
        let timeout_ms = pool.statement_timeout.as_millis().to_string();
        let opts = PgConnectOptions::from_str(url).map_err(backend)?.options([("statement_timeout", timeout_ms.as_str())]);
        let pool = PgPoolOptions::new().max_connections(pool.max_connections.max(1)).acquire_timeout(pool.acquire_timeout).connect_with(opts).await.map_err(backend)?;
        MIGRATOR.run(&pool).await.map_err(|e| DbError::Backend(format!("migrations: {e}")))?;
        Ok(Self { pool })
    }
}

const ATTEMPT_COLS: &str = "a.id, a.sitting_id, a.ref, a.kek_epoch, a.wrapped_dek, a.consent_notice, a.consent_at, a.created_at, \
     a.state, a.ended_at, a.token_generation, a.bytes_stored";

fn attempt_row(r: &PgRow) -> Result<Attempt, sqlx::Error> {
    let state: String = r.try_get("state")?;
    Ok(Attempt {
        id: r.try_get("id")?,
        sitting_id: r.try_get("sitting_id")?,
        reference: r.try_get("ref")?,
        kek_epoch: r.try_get("kek_epoch")?,
        wrapped_dek: r.try_get("wrapped_dek")?,
        consent_notice: r.try_get("consent_notice")?,
        consent_at_ms: r.try_get("consent_at")?,
        created_at_ms: r.try_get("created_at")?,
        state: state.parse().map_err(|e| decode_err("state", e))?,
        ended_at_ms: r.try_get("ended_at")?,
        token_generation: r.try_get::<i32, _>("token_generation")? as u32,
        bytes_stored: r.try_get::<i64, _>("bytes_stored")? as u64,
    })
}

const TOKEN_COLS: &str = "t.attempt_id AS t_attempt_id, t.generation, t.expires_at, t.revoked_at";

fn token_row(r: &PgRow) -> Result<LaunchToken, sqlx::Error> {
    Ok(LaunchToken {
        attempt_id: r.try_get("t_attempt_id")?,
        generation: r.try_get::<i32, _>("generation")? as u32,
        expires_at_ms: r.try_get("expires_at")?,
        revoked_at_ms: r.try_get("revoked_at")?,
    })
}

const STREAM_COLS: &str = "id, attempt_id, salt, opened_at, ended_at, final_index";

fn stream_row(r: &PgRow) -> Result<Stream, sqlx::Error> {
    Ok(Stream {
        id: r.try_get("id")?,
        attempt_id: r.try_get("attempt_id")?,
        salt: arr32(r, "salt")?,
        opened_at_ms: r.try_get("opened_at")?,
        ended_at_ms: r.try_get("ended_at")?,
        final_index: r.try_get::<Option<i64>, _>("final_index")?.map(|i| i as u32),
    })
}

const CHUNK_COLS: &str = "stream_id, idx, digest, prev_digest, size, media_start_us, media_end_us, last, content_sha256";

fn chunk_row(r: &PgRow) -> Result<ChunkRow, sqlx::Error> {
    Ok(ChunkRow {
        stream_id: r.try_get("stream_id")?,
        index: r.try_get::<i64, _>("idx")? as u32,
        digest: arr32(r, "digest")?,
        content_sha256: arr32(r, "content_sha256")?,
        prev_digest: arr32(r, "prev_digest")?,
        size: r.try_get::<i64, _>("size")? as u64,
        media_start_us: r.try_get::<i64, _>("media_start_us")? as u64,
        media_end_us: r.try_get::<i64, _>("media_end_us")? as u64,
        last: r.try_get("last")?,
    })
}

fn staff_row(r: &PgRow) -> Result<StaffAccount, sqlx::Error> {
    let role: String = r.try_get("role")?;
    Ok(StaffAccount {
        id: r.try_get("id")?,
        login: r.try_get("login")?,
        role: crate::domain::Role::parse(&role).map_err(|e| decode_err("role", e))?,
        password_hash: r.try_get("password_hash")?,
    })
}

fn audit_row(r: &PgRow) -> Result<AuditEntry, sqlx::Error> {
    Ok(AuditEntry {
        seq: r.try_get("seq")?,
        at_ms: r.try_get("at")?,
        actor: r.try_get("actor")?,
        action: r.try_get("action")?,
        attempt_id: r.try_get("attempt_id")?,
        detail: r.try_get("detail")?,
        prev_hash: arr32(r, "prev_hash")?,
        hash: arr32(r, "hash")?,
    })
}

#[async_trait]
impl Database for PostgresDatabase {
    async fn create_sitting(&self, id: Uuid, reference: &str, at_ms: i64) -> DbResult<()> {
        sqlx::query("INSERT INTO sittings (id, ref, created_at) VALUES ($1, $2, $3)").bind(id).bind(reference).bind(at_ms).execute(&self.pool).await.map_err(backend)?;
        Ok(())
    }

    async fn sitting_exists(&self, id: Uuid) -> DbResult<bool> {
        Ok(sqlx::query("SELECT 1 FROM sittings WHERE id = $1").bind(id).fetch_optional(&self.pool).await.map_err(backend)?.is_some())
    }

    async fn create_attempt(&self, a: NewAttempt) -> DbResult<()> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        sqlx::query(
            "INSERT INTO attempts (id, sitting_id, ref, kek_epoch, wrapped_dek, dek_fingerprint, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(a.id)
        .bind(a.sitting_id)
        .bind(&a.reference)
        .bind(&a.kek_epoch)
        .bind(&a.wrapped_dek)
        .bind(&a.dek_fingerprint)
        .bind(a.created_at_ms)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        sqlx::query("INSERT INTO launch_tokens (token_hash, attempt_id, generation, issued_at, expires_at) VALUES ($1, $2, 0, $3, $4)")
            .bind(a.token_hash.as_slice())
            .bind(a.id)
            .bind(a.created_at_ms)
            .bind(a.token_expires_at_ms)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)
    }

    async fn attempt(&self, id: Uuid) -> DbResult<Attempt> {
        let r = sqlx::query(&format!("SELECT {ATTEMPT_COLS} FROM attempts a WHERE a.id = $1")).bind(id).fetch_one(&self.pool).await.map_err(backend)?;
        attempt_row(&r).map_err(backend)
    }

    async fn sitting_by_ref(&self, reference: &str) -> DbResult<Uuid> {
        sqlx::query_scalar("SELECT id FROM sittings WHERE ref = $1").bind(reference).fetch_one(&self.pool).await.map_err(backend)
    }

    async fn attempt_by_ref(&self, sitting: Uuid, reference: &str) -> DbResult<Attempt> {
        let r = sqlx::query(&format!("SELECT {ATTEMPT_COLS} FROM attempts a WHERE a.sitting_id = $1 AND a.ref = $2"))
            .bind(sitting)
            .bind(reference)
            .fetch_one(&self.pool)
            .await
            .map_err(backend)?;
        attempt_row(&r).map_err(backend)
    }

    async fn attempt_by_token(&self, token_hash: [u8; 32]) -> DbResult<(Attempt, LaunchToken)> {
        let r = sqlx::query(&format!("SELECT {ATTEMPT_COLS}, {TOKEN_COLS} FROM launch_tokens t JOIN attempts a ON a.id = t.attempt_id WHERE t.token_hash = $1"))
            .bind(token_hash.as_slice())
            .fetch_one(&self.pool)
            .await
            .map_err(backend)?;
        Ok((attempt_row(&r).map_err(backend)?, token_row(&r).map_err(backend)?))
    }

    async fn token_of(&self, attempt: Uuid, generation: u32) -> DbResult<LaunchToken> {
        let r = sqlx::query(&format!("SELECT {TOKEN_COLS} FROM launch_tokens t WHERE t.attempt_id = $1 AND t.generation = $2"))
            .bind(attempt)
            .bind(generation as i32)
            .fetch_one(&self.pool)
            .await
            .map_err(backend)?;
        token_row(&r).map_err(backend)
    }

    async fn issue_token(&self, attempt: Uuid, generation: u32, token_hash: [u8; 32], issued_at_ms: i64, expires_at_ms: i64) -> DbResult<()> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        sqlx::query("UPDATE launch_tokens SET revoked_at = $2 WHERE attempt_id = $1 AND revoked_at IS NULL")
            .bind(attempt)
            .bind(issued_at_ms)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        sqlx::query("INSERT INTO launch_tokens (token_hash, attempt_id, generation, issued_at, expires_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(token_hash.as_slice())
            .bind(attempt)
            .bind(generation as i32)
            .bind(issued_at_ms)
            .bind(expires_at_ms)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        sqlx::query("UPDATE attempts SET token_generation = $2 WHERE id = $1").bind(attempt).bind(generation as i32).execute(&mut *tx).await.map_err(backend)?;
        tx.commit().await.map_err(backend)
    }

    async fn revoke_tokens(&self, attempt: Uuid, at_ms: i64) -> DbResult<u64> {
        let done = sqlx::query("UPDATE launch_tokens SET revoked_at = $2 WHERE attempt_id = $1 AND revoked_at IS NULL")
            .bind(attempt)
            .bind(at_ms)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(done.rows_affected())
    }

    async fn claim_ended_attempts(&self, ended_before_ms: i64, now_ms: i64, lease_ms: i64, limit: u32) -> DbResult<Vec<Uuid>> {
        // Rows another transaction is claiming are skipped, not waited for: claimers on
        // every instance run at once and share the work.
        sqlx::query_scalar(
            "UPDATE attempts SET claimed_until = $3 + $4 WHERE id IN (
                 SELECT id FROM attempts
                 WHERE state <> 'destroyed' AND ended_at < $1 AND (claimed_until IS NULL OR claimed_until <= $2)
                 ORDER BY ended_at LIMIT $5
                 FOR UPDATE SKIP LOCKED)
             RETURNING id",
        )
        .bind(ended_before_ms)
        .bind(now_ms)
        .bind(now_ms)
        .bind(lease_ms)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)
    }

    async fn record_consent(&self, attempt: Uuid, notice_version: &str, at_ms: i64) -> DbResult<()> {
        sqlx::query("UPDATE attempts SET consent_notice = $2, consent_at = $3 WHERE id = $1")
            .bind(attempt)
            .bind(notice_version)
            .bind(at_ms)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn open_stream(&self, s: Stream, conn: ConnectionInfo, max_streams: u64) -> DbResult<bool> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        // The attempt's row lock makes concurrent opens of one attempt take turns.
        sqlx::query("SELECT 1 FROM attempts WHERE id = $1 FOR UPDATE").bind(s.attempt_id).execute(&mut *tx).await.map_err(backend)?;
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM streams WHERE attempt_id = $1").bind(s.attempt_id).fetch_one(&mut *tx).await.map_err(backend)?;
        if n as u64 >= max_streams {
            return Ok(false);
        }
        sqlx::query("INSERT INTO streams (id, attempt_id, salt, opened_at, client_ip, agent_version, os) VALUES ($1, $2, $3, $4, $5, $6, $7)")
            .bind(s.id)
            .bind(s.attempt_id)
            .bind(s.salt.as_slice())
            .bind(s.opened_at_ms)
            .bind(conn.client_ip)
            .bind(conn.agent_version)
            .bind(conn.os)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(true)
    }

    async fn stream(&self, id: Uuid) -> DbResult<Stream> {
        let r = sqlx::query(&format!("SELECT {STREAM_COLS} FROM streams WHERE id = $1")).bind(id).fetch_one(&self.pool).await.map_err(backend)?;
        stream_row(&r).map_err(backend)
    }

    async fn streams_of(&self, attempt: Uuid) -> DbResult<Vec<Stream>> {
        let rows = sqlx::query(&format!("SELECT {STREAM_COLS} FROM streams WHERE attempt_id = $1 ORDER BY opened_at, id"))
            .bind(attempt)
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        rows.iter().map(stream_row).collect::<Result<_, _>>().map_err(backend)
    }

    async fn end_stream(&self, id: Uuid, final_index: u32, at_ms: i64) -> DbResult<()> {
        sqlx::query("UPDATE streams SET ended_at = COALESCE(ended_at, $3), final_index = $2 WHERE id = $1 AND (final_index IS NULL OR final_index = $2)")
            .bind(id)
            .bind(final_index as i64)
            .bind(at_ms)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn insert_chunks(&self, batch: &[NewChunk], at_ms: i64) -> DbResult<Vec<ChunkInsert>> {
        // Rows are locked in one order on every instance (chunks by attempt, stream and
        // index, then attempts by id), so that two instances' batches wait for each other
        // instead of deadlocking.
        let mut order: Vec<usize> = (0..batch.len()).collect();
        order.sort_by_key(|&i| (batch[i].attempt, batch[i].row.stream_id, batch[i].row.index));
        let mut outcomes = vec![ChunkInsert::Conflict; batch.len()];
        let mut added: std::collections::BTreeMap<Uuid, u64> = Default::default();
        let mut tx = self.pool.begin().await.map_err(backend)?;
        for i in order {
            let NewChunk { attempt, row } = &batch[i];
            // The primary key arbitrates between concurrent uploads, on any instance.
            let inserted = sqlx::query(&format!(
                "INSERT INTO chunks ({CHUNK_COLS}, stored_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (stream_id, idx) DO NOTHING"
            ))
            .bind(row.stream_id)
            .bind(row.index as i64)
            .bind(row.digest.as_slice())
            .bind(row.prev_digest.as_slice())
            .bind(row.size as i64)
            .bind(row.media_start_us as i64)
            .bind(row.media_end_us as i64)
            .bind(row.last)
            .bind(row.content_sha256.as_slice())
            .bind(at_ms)
            .execute(&mut *tx)
            .await
            .map_err(backend)?
            .rows_affected()
                == 1;
            outcomes[i] = if inserted {
                *added.entry(*attempt).or_default() += row.size;
                ChunkInsert::Created
            } else {
                let stored: Vec<u8> = sqlx::query_scalar("SELECT digest FROM chunks WHERE stream_id = $1 AND idx = $2")
                    .bind(row.stream_id)
                    .bind(row.index as i64)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(backend)?;
                if stored == row.digest {
                    ChunkInsert::Duplicate
                } else {
                    ChunkInsert::Conflict
                }
            };
        }
        // Attempts last, in order too: one update each, however many of its chunks came.
        for (attempt, bytes) in added {
            sqlx::query("UPDATE attempts SET bytes_stored = bytes_stored + $2 WHERE id = $1")
                .bind(attempt)
                .bind(bytes as i64)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(outcomes)
    }

    async fn chunk(&self, stream: Uuid, index: u32) -> DbResult<ChunkRow> {
        let r = sqlx::query(&format!("SELECT {CHUNK_COLS} FROM chunks WHERE stream_id = $1 AND idx = $2"))
            .bind(stream)
            .bind(index as i64)
            .fetch_one(&self.pool)
            .await
            .map_err(backend)?;
        chunk_row(&r).map_err(backend)
    }

    async fn chunks_of(&self, stream: Uuid) -> DbResult<Vec<ChunkRow>> {
        let rows =
            sqlx::query(&format!("SELECT {CHUNK_COLS} FROM chunks WHERE stream_id = $1 ORDER BY idx")).bind(stream).fetch_all(&self.pool).await.map_err(backend)?;
        rows.iter().map(chunk_row).collect::<Result<_, _>>().map_err(backend)
    }

    async fn create_staff(&self, s: StaffAccount, at_ms: i64) -> DbResult<()> {
        sqlx::query("INSERT INTO staff (id, login, role, password_hash, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(s.id)
            .bind(&s.login)
            .bind(s.role.as_str())
            .bind(&s.password_hash)
            .bind(at_ms)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn staff_by_login(&self, login: &str) -> DbResult<StaffAccount> {
        let r = sqlx::query("SELECT id, login, role, password_hash FROM staff WHERE login = $1").bind(login).fetch_one(&self.pool).await.map_err(backend)?;
        staff_row(&r).map_err(backend)
    }

    async fn create_staff_session(&self, token_hash: [u8; 32], staff: Uuid, expires_at_ms: i64) -> DbResult<()> {
        sqlx::query("INSERT INTO staff_sessions (token_hash, staff_id, expires_at) VALUES ($1, $2, $3)")
            .bind(token_hash.as_slice())
            .bind(staff)
            .bind(expires_at_ms)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn staff_by_session(&self, token_hash: [u8; 32], now_ms: i64) -> DbResult<StaffAccount> {
        let r = sqlx::query(
            "SELECT s.id, s.login, s.role, s.password_hash FROM staff_sessions x JOIN staff s ON s.id = x.staff_id
             WHERE x.token_hash = $1 AND x.expires_at > $2",
        )
        .bind(token_hash.as_slice())
        .bind(now_ms)
        .fetch_one(&self.pool)
        .await
        .map_err(backend)?;
        staff_row(&r).map_err(backend)
    }

    async fn append_audit(&self, e: AuditEvent) -> DbResult<AuditEntry> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let entry = append_audit_in(&mut tx, e).await?;
        tx.commit().await.map_err(backend)?;
        Ok(entry)
    }

    async fn set_state_audited(&self, attempt: Uuid, from: AttemptState, to: AttemptState, at_ms: i64, event: AuditEvent) -> DbResult<bool> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        if !compare_and_set_state(&mut *tx, attempt, from, to, at_ms).await? {
            return Ok(false);
        }
        append_audit_in(&mut tx, event).await?;
        tx.commit().await.map_err(backend)?;
        Ok(true)
    }

    async fn audit_trail(&self) -> DbResult<Vec<AuditEntry>> {
        let rows =
            sqlx::query("SELECT seq, at, actor, action, attempt_id, detail, prev_hash, hash FROM audit ORDER BY seq").fetch_all(&self.pool).await.map_err(backend)?;
        rows.iter().map(audit_row).collect::<Result<_, _>>().map_err(backend)
    }
}

async fn append_audit_in(tx: &mut sqlx::Transaction<'_, sqlx::Postgres>, e: AuditEvent) -> DbResult<AuditEntry> {
    // Every instance appends to one chain: one appender at a time, until commit.
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(AUDIT_LOCK).execute(&mut **tx).await.map_err(backend)?;
    let last = sqlx::query("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetch_optional(&mut **tx).await.map_err(backend)?;
    let (seq, prev_hash) = match last {
        Some(r) => (r.try_get::<i64, _>("seq").map_err(backend)? + 1, arr32(&r, "hash").map_err(backend)?),
        None => (1, [0u8; 32]),
    };
    let detail = e.detail.to_string();
    let hash = audit_hash(&prev_hash, seq, e.at_ms, &e.actor, &e.action, e.attempt_id, &detail);
    sqlx::query("INSERT INTO audit (seq, at, actor, action, attempt_id, detail, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
        .bind(seq)
        .bind(e.at_ms)
        .bind(&e.actor)
        .bind(&e.action)
        .bind(e.attempt_id)
        .bind(&detail)
        .bind(prev_hash.as_slice())
        .bind(hash.as_slice())
        .execute(&mut **tx)
        .await
        .map_err(backend)?;
    Ok(AuditEntry { seq, at_ms: e.at_ms, actor: e.actor, action: e.action, attempt_id: e.attempt_id, detail, prev_hash, hash })
}

/// The attempt's state moves from `from` to `to` only if it still is `from`; `ended_at`
/// is stamped when it becomes `ended`.
async fn compare_and_set_state<'e, E: sqlx::Executor<'e, Database = sqlx::Postgres>>(
    db: E,
    attempt: Uuid,
    from: AttemptState,
    to: AttemptState,
    at_ms: i64,
) -> DbResult<bool> {
    let done = sqlx::query(
        "UPDATE attempts SET state = $3::text, state_changed_at = $4,
                 ended_at = CASE WHEN $3::text = 'ended' THEN $4 ELSE ended_at END
             WHERE id = $1 AND state = $2",
    )
    .bind(attempt)
    .bind(from.as_str())
    .bind(to.as_str())
    .bind(at_ms)
    .execute(db)
    .await
    .map_err(backend)?;
    Ok(done.rows_affected() == 1)
}
