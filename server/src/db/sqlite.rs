//! SQLite backend on `sqlx`: WAL, `synchronous=FULL` (a commit is on disk before we
//! acknowledge), `secure_delete` (freed pages are zeroed), foreign keys, a busy timeout so
//! that the CLI and a running server share the file. One writer connection (SQLite has one
//! writer anyway; serialising here avoids busy retries) and a pool of readers.

use super::*;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow, SqliteSynchronous};
use sqlx::Row;
use std::path::Path;
use std::str::FromStr;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");

#[derive(Clone)]
pub struct SqliteDatabase {
    writer: SqlitePool,
    readers: SqlitePool,
}

fn uuid_at(r: &SqliteRow, col: &str) -> Result<Uuid, sqlx::Error> {
    let s: String = r.try_get(col)?;
    Uuid::parse_str(&s).map_err(|e| sqlx::Error::ColumnDecode { index: col.into(), source: Box::new(e) })
}

fn arr32(r: &SqliteRow, col: &str) -> Result<[u8; 32], sqlx::Error> {
    let v: Vec<u8> = r.try_get(col)?;
    v.try_into().map_err(|_| sqlx::Error::ColumnDecode { index: col.into(), source: "expected 32 bytes".into() })
}

fn decode_err(col: &str, e: String) -> sqlx::Error {
    sqlx::Error::ColumnDecode { index: col.into(), source: e.into() }
}

impl SqliteDatabase {
    pub async fn open(path: &Path, pool: &PoolSettings) -> DbResult<Self> {
        Self::with_options(SqliteConnectOptions::new().filename(path), pool).await
    }

    pub async fn connect(url: &str, pool: &PoolSettings) -> DbResult<Self> {
        Self::with_options(SqliteConnectOptions::from_str(url).map_err(backend)?, pool).await
    }

    async fn with_options(opts: SqliteConnectOptions, pool: &PoolSettings) -> DbResult<Self> {
        let opts = opts
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .pragma("secure_delete", "ON")
            .foreign_keys(true)
            .busy_timeout(pool.statement_timeout);
        let writer = SqlitePoolOptions::new().max_connections(1).acquire_timeout(pool.acquire_timeout).connect_with(opts.clone()).await.map_err(backend)?;
        refuse_pre_sqlx_file(&writer).await?;
        MIGRATOR.run(&writer).await.map_err(|e| DbError::Backend(format!("migrations: {e}")))?;
        let readers = SqlitePoolOptions::new()
            .max_connections(pool.max_connections.max(1))
            .acquire_timeout(pool.acquire_timeout)
            .connect_with(opts.read_only(true))
            .await
            .map_err(backend)?;
        Ok(Self { writer, readers })
    }
}

/// A data directory made before the move to sqlx numbered its schema with `user_version`;
/// running the migrations over it would fail half-way. Say so plainly instead.
async fn refuse_pre_sqlx_file(pool: &SqlitePool) -> DbResult<()> {
    let version: i64 = sqlx::query_scalar("PRAGMA user_version").fetch_one(pool).await.map_err(backend)?;
    let tracked: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sqlite_master WHERE name = '_sqlx_migrations'").fetch_one(pool).await.map_err(backend)?;
    if version > 0 && tracked == 0 {
        return Err(DbError::Backend("this database was created by an earlier development version; start from an empty data directory".into()));
    }
    Ok(())
}

const ATTEMPT_COLS: &str = "a.id, a.sitting_id, a.ref, a.kek_epoch, a.wrapped_dek, a.consent_notice, a.consent_at, a.created_at, \
     a.state, a.ended_at, a.token_generation, a.bytes_stored";

fn attempt_row(r: &SqliteRow) -> Result<Attempt, sqlx::Error> {
    let state: String = r.try_get("state")?;
    Ok(Attempt {
        id: uuid_at(r, "id")?,
        sitting_id: uuid_at(r, "sitting_id")?,
        reference: r.try_get("ref")?,
        kek_epoch: r.try_get("kek_epoch")?,
        wrapped_dek: r.try_get("wrapped_dek")?,
        consent_notice: r.try_get("consent_notice")?,
        consent_at_ms: r.try_get("consent_at")?,
        created_at_ms: r.try_get("created_at")?,
        state: state.parse().map_err(|e| decode_err("state", e))?,
        ended_at_ms: r.try_get("ended_at")?,
        token_generation: r.try_get::<i64, _>("token_generation")? as u32,
        bytes_stored: r.try_get::<i64, _>("bytes_stored")? as u64,
    })
}

const TOKEN_COLS: &str = "t.attempt_id AS t_attempt_id, t.generation, t.expires_at, t.revoked_at";

fn token_row(r: &SqliteRow) -> Result<LaunchToken, sqlx::Error> {
    Ok(LaunchToken {
        attempt_id: uuid_at(r, "t_attempt_id")?,
        generation: r.try_get::<i64, _>("generation")? as u32,
        expires_at_ms: r.try_get("expires_at")?,
        revoked_at_ms: r.try_get("revoked_at")?,
    })
}

const STREAM_COLS: &str = "id, attempt_id, salt, opened_at, ended_at, final_index";

fn stream_row(r: &SqliteRow) -> Result<Stream, sqlx::Error> {
    Ok(Stream {
        id: uuid_at(r, "id")?,
        attempt_id: uuid_at(r, "attempt_id")?,
        salt: arr32(r, "salt")?,
        opened_at_ms: r.try_get("opened_at")?,
        ended_at_ms: r.try_get("ended_at")?,
        final_index: r.try_get::<Option<i64>, _>("final_index")?.map(|i| i as u32),
    })
}

const CHUNK_COLS: &str = "stream_id, idx, digest, prev_digest, size, media_start_us, media_end_us, last, content_sha256";

fn chunk_row(r: &SqliteRow) -> Result<ChunkRow, sqlx::Error> {
    Ok(ChunkRow {
        stream_id: uuid_at(r, "stream_id")?,
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

fn staff_row(r: &SqliteRow) -> Result<StaffAccount, sqlx::Error> {
    let role: String = r.try_get("role")?;
    Ok(StaffAccount {
        id: uuid_at(r, "id")?,
        login: r.try_get("login")?,
        role: crate::domain::Role::parse(&role).map_err(|e| decode_err("role", e))?,
        password_hash: r.try_get("password_hash")?,
    })
}

fn audit_row(r: &SqliteRow) -> Result<AuditEntry, sqlx::Error> {
    let attempt: Option<String> = r.try_get("attempt_id")?;
    Ok(AuditEntry {
        seq: r.try_get("seq")?,
        at_ms: r.try_get("at")?,
        actor: r.try_get("actor")?,
        action: r.try_get("action")?,
        attempt_id: attempt.and_then(|a| Uuid::parse_str(&a).ok()),
        detail: r.try_get("detail")?,
        prev_hash: arr32(r, "prev_hash")?,
        hash: arr32(r, "hash")?,
    })
}

#[async_trait]
impl Database for SqliteDatabase {
    async fn create_sitting(&self, id: Uuid, reference: &str, at_ms: i64) -> DbResult<()> {
        sqlx::query("INSERT INTO sittings (id, ref, created_at) VALUES (?1, ?2, ?3)")
            .bind(id.to_string())
            .bind(reference)
            .bind(at_ms)
            .execute(&self.writer)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn sitting_exists(&self, id: Uuid) -> DbResult<bool> {
        let found = sqlx::query("SELECT 1 FROM sittings WHERE id = ?1").bind(id.to_string()).fetch_optional(&self.readers).await.map_err(backend)?;
        Ok(found.is_some())
    }

    async fn create_attempt(&self, a: NewAttempt) -> DbResult<()> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(backend)?;
        sqlx::query(
            "INSERT INTO attempts (id, sitting_id, ref, token_hash, token_expires_at, kek_epoch, wrapped_dek, dek_fingerprint, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )
        .bind(a.id.to_string())
        .bind(a.sitting_id.to_string())
        .bind(&a.reference)
        .bind(a.token_hash.as_slice())
        .bind(a.token_expires_at_ms)
        .bind(&a.kek_epoch)
        .bind(&a.wrapped_dek)
        .bind(&a.dek_fingerprint)
        .bind(a.created_at_ms)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        sqlx::query("INSERT INTO launch_tokens (token_hash, attempt_id, generation, issued_at, expires_at) VALUES (?1, ?2, 0, ?3, ?4)")
            .bind(a.token_hash.as_slice())
            .bind(a.id.to_string())
            .bind(a.created_at_ms)
            .bind(a.token_expires_at_ms)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)
    }

    async fn attempt(&self, id: Uuid) -> DbResult<Attempt> {
        let r = sqlx::query(&format!("SELECT {ATTEMPT_COLS} FROM attempts a WHERE a.id = ?1")).bind(id.to_string()).fetch_one(&self.readers).await.map_err(backend)?;
        attempt_row(&r).map_err(backend)
    }

    async fn sitting_by_ref(&self, reference: &str) -> DbResult<Uuid> {
        let r = sqlx::query("SELECT id FROM sittings WHERE ref = ?1").bind(reference).fetch_one(&self.readers).await.map_err(backend)?;
        uuid_at(&r, "id").map_err(backend)
    }

    async fn attempt_by_ref(&self, sitting: Uuid, reference: &str) -> DbResult<Attempt> {
        let r = sqlx::query(&format!("SELECT {ATTEMPT_COLS} FROM attempts a WHERE a.sitting_id = ?1 AND a.ref = ?2"))
            .bind(sitting.to_string())
            .bind(reference)
            .fetch_one(&self.readers)
            .await
            .map_err(backend)?;
        attempt_row(&r).map_err(backend)
    }

    async fn attempt_by_token(&self, token_hash: [u8; 32]) -> DbResult<(Attempt, LaunchToken)> {
        let r = sqlx::query(&format!("SELECT {ATTEMPT_COLS}, {TOKEN_COLS} FROM launch_tokens t JOIN attempts a ON a.id = t.attempt_id WHERE t.token_hash = ?1"))
            .bind(token_hash.as_slice())
            .fetch_one(&self.readers)
            .await
            .map_err(backend)?;
        Ok((attempt_row(&r).map_err(backend)?, token_row(&r).map_err(backend)?))
    }

    async fn token_of(&self, attempt: Uuid, generation: u32) -> DbResult<LaunchToken> {
        let r = sqlx::query(&format!("SELECT {TOKEN_COLS} FROM launch_tokens t WHERE t.attempt_id = ?1 AND t.generation = ?2"))
            .bind(attempt.to_string())
            .bind(generation as i64)
            .fetch_one(&self.readers)
            .await
            .map_err(backend)?;
        token_row(&r).map_err(backend)
    }

    async fn issue_token(&self, attempt: Uuid, generation: u32, token_hash: [u8; 32], issued_at_ms: i64, expires_at_ms: i64) -> DbResult<()> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(backend)?;
        sqlx::query("UPDATE launch_tokens SET revoked_at = ?2 WHERE attempt_id = ?1 AND revoked_at IS NULL")
            .bind(attempt.to_string())
            .bind(issued_at_ms)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        sqlx::query("INSERT INTO launch_tokens (token_hash, attempt_id, generation, issued_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)")
            .bind(token_hash.as_slice())
            .bind(attempt.to_string())
            .bind(generation as i64)
            .bind(issued_at_ms)
            .bind(expires_at_ms)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        sqlx::query("UPDATE attempts SET token_generation = ?2 WHERE id = ?1")
            .bind(attempt.to_string())
            .bind(generation as i64)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)
    }

    async fn revoke_tokens(&self, attempt: Uuid, at_ms: i64) -> DbResult<u64> {
        let done = sqlx::query("UPDATE launch_tokens SET revoked_at = ?2 WHERE attempt_id = ?1 AND revoked_at IS NULL")
            .bind(attempt.to_string())
            .bind(at_ms)
            .execute(&self.writer)
            .await
            .map_err(backend)?;
        Ok(done.rows_affected())
    }

    async fn claim_ended_attempts(&self, ended_before_ms: i64, now_ms: i64, lease_ms: i64, limit: u32) -> DbResult<Vec<Uuid>> {
        // One writer connection and BEGIN IMMEDIATE: claimers in this process and in any
        // other on the same file take turns, so no row is claimed twice.
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(backend)?;
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM attempts WHERE state <> 'destroyed' AND ended_at < ?1 AND (claimed_until IS NULL OR claimed_until <= ?2)
             ORDER BY ended_at LIMIT ?3",
        )
        .bind(ended_before_ms)
        .bind(now_ms)
        .bind(limit as i64)
        .fetch_all(&mut *tx)
        .await
        .map_err(backend)?;
        for id in &ids {
            sqlx::query("UPDATE attempts SET claimed_until = ?2 WHERE id = ?1").bind(id).bind(now_ms + lease_ms).execute(&mut *tx).await.map_err(backend)?;
        }
        tx.commit().await.map_err(backend)?;
        ids.iter().map(|i| Uuid::parse_str(i).map_err(|e| DbError::Backend(e.to_string()))).collect()
    }

    async fn record_consent(&self, attempt: Uuid, notice_version: &str, at_ms: i64) -> DbResult<()> {
        sqlx::query("UPDATE attempts SET consent_notice = ?2, consent_at = ?3 WHERE id = ?1")
            .bind(attempt.to_string())
            .bind(notice_version)
            .bind(at_ms)
            .execute(&self.writer)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn open_stream(&self, s: Stream, conn: ConnectionInfo, max_streams: u64) -> DbResult<bool> {
        // One statement on the single writer: the count and the insert cannot interleave.
        let done = sqlx::query(
            "INSERT INTO streams (id, attempt_id, salt, opened_at, client_ip, agent_version, os)
             SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7 WHERE (SELECT COUNT(*) FROM streams WHERE attempt_id = ?2) < ?8",
        )
        .bind(s.id.to_string())
        .bind(s.attempt_id.to_string())
        .bind(s.salt.as_slice())
        .bind(s.opened_at_ms)
        .bind(conn.client_ip)
        .bind(conn.agent_version)
        .bind(conn.os)
        .bind(max_streams as i64)
        .execute(&self.writer)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }

    async fn stream(&self, id: Uuid) -> DbResult<Stream> {
        let r = sqlx::query(&format!("SELECT {STREAM_COLS} FROM streams WHERE id = ?1")).bind(id.to_string()).fetch_one(&self.readers).await.map_err(backend)?;
        stream_row(&r).map_err(backend)
    }

    async fn streams_of(&self, attempt: Uuid) -> DbResult<Vec<Stream>> {
        let rows = sqlx::query(&format!("SELECT {STREAM_COLS} FROM streams WHERE attempt_id = ?1 ORDER BY opened_at, id"))
            .bind(attempt.to_string())
            .fetch_all(&self.readers)
            .await
            .map_err(backend)?;
        rows.iter().map(stream_row).collect::<Result<_, _>>().map_err(backend)
    }

    async fn end_stream(&self, id: Uuid, final_index: u32, at_ms: i64) -> DbResult<()> {
        sqlx::query("UPDATE streams SET ended_at = COALESCE(ended_at, ?3), final_index = ?2 WHERE id = ?1 AND (final_index IS NULL OR final_index = ?2)")
            .bind(id.to_string())
            .bind(final_index as i64)
            .bind(at_ms)
            .execute(&self.writer)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn insert_chunks(&self, batch: &[NewChunk], at_ms: i64) -> DbResult<Vec<ChunkInsert>> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(backend)?;
        let mut outcomes = Vec::with_capacity(batch.len());
        // One statement per new chunk and one per attempt: statements, not the commit, are
        // what a batch costs here.
        let mut added: std::collections::BTreeMap<Uuid, u64> = Default::default();
        for NewChunk { attempt, row } in batch {
            let inserted = sqlx::query(&format!("INSERT INTO chunks ({CHUNK_COLS}, stored_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) ON CONFLICT DO NOTHING"))
                .bind(row.stream_id.to_string())
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
            outcomes.push(if inserted {
                *added.entry(*attempt).or_default() += row.size;
                ChunkInsert::Created
            } else {
                let stored: Vec<u8> = sqlx::query_scalar("SELECT digest FROM chunks WHERE stream_id = ?1 AND idx = ?2")
                    .bind(row.stream_id.to_string())
                    .bind(row.index as i64)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(backend)?;
                if stored == row.digest {
                    ChunkInsert::Duplicate
                } else {
                    ChunkInsert::Conflict
                }
            });
        }
        for (attempt, bytes) in added {
            sqlx::query("UPDATE attempts SET bytes_stored = bytes_stored + ?2 WHERE id = ?1")
                .bind(attempt.to_string())
                .bind(bytes as i64)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(outcomes)
    }

    async fn chunk(&self, stream: Uuid, index: u32) -> DbResult<ChunkRow> {
        let r = sqlx::query(&format!("SELECT {CHUNK_COLS} FROM chunks WHERE stream_id = ?1 AND idx = ?2"))
            .bind(stream.to_string())
            .bind(index as i64)
            .fetch_one(&self.readers)
            .await
            .map_err(backend)?;
        chunk_row(&r).map_err(backend)
    }

    async fn chunks_of(&self, stream: Uuid) -> DbResult<Vec<ChunkRow>> {
        let rows = sqlx::query(&format!("SELECT {CHUNK_COLS} FROM chunks WHERE stream_id = ?1 ORDER BY idx"))
            .bind(stream.to_string())
            .fetch_all(&self.readers)
            .await
            .map_err(backend)?;
        rows.iter().map(chunk_row).collect::<Result<_, _>>().map_err(backend)
    }

    async fn create_staff(&self, s: StaffAccount, at_ms: i64) -> DbResult<()> {
        sqlx::query("INSERT INTO staff (id, login, role, password_hash, created_at) VALUES (?1, ?2, ?3, ?4, ?5)")
            .bind(s.id.to_string())
            .bind(&s.login)
            .bind(s.role.as_str())
            .bind(&s.password_hash)
            .bind(at_ms)
            .execute(&self.writer)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn staff_by_login(&self, login: &str) -> DbResult<StaffAccount> {
        let r = sqlx::query("SELECT id, login, role, password_hash FROM staff WHERE login = ?1").bind(login).fetch_one(&self.readers).await.map_err(backend)?;
        staff_row(&r).map_err(backend)
    }

    async fn create_staff_session(&self, token_hash: [u8; 32], staff: Uuid, expires_at_ms: i64) -> DbResult<()> {
        sqlx::query("INSERT INTO staff_sessions (token_hash, staff_id, expires_at) VALUES (?1, ?2, ?3)")
            .bind(token_hash.as_slice())
            .bind(staff.to_string())
            .bind(expires_at_ms)
            .execute(&self.writer)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn staff_by_session(&self, token_hash: [u8; 32], now_ms: i64) -> DbResult<StaffAccount> {
        let r = sqlx::query(
            "SELECT s.id, s.login, s.role, s.password_hash FROM staff_sessions x JOIN staff s ON s.id = x.staff_id
             WHERE x.token_hash = ?1 AND x.expires_at > ?2",
        )
        .bind(token_hash.as_slice())
        .bind(now_ms)
        .fetch_one(&self.readers)
        .await
        .map_err(backend)?;
        staff_row(&r).map_err(backend)
    }

    async fn append_audit(&self, e: AuditEvent) -> DbResult<AuditEntry> {
        // The single writer connection serialises appenders, so two can never chain onto
        // the same predecessor; the CLI on the same file waits on SQLite's write lock.
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(backend)?;
        let entry = append_audit_in(&mut tx, e).await?;
        tx.commit().await.map_err(backend)?;
        Ok(entry)
    }

    async fn set_state_audited(&self, attempt: Uuid, from: AttemptState, to: AttemptState, at_ms: i64, event: AuditEvent) -> DbResult<bool> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(backend)?;
        if !compare_and_set_state(&mut *tx, attempt, from, to, at_ms).await? {
            return Ok(false);
        }
        append_audit_in(&mut tx, event).await?;
        tx.commit().await.map_err(backend)?;
        Ok(true)
    }

    async fn audit_trail(&self) -> DbResult<Vec<AuditEntry>> {
        let rows =
            sqlx::query("SELECT seq, at, actor, action, attempt_id, detail, prev_hash, hash FROM audit ORDER BY seq").fetch_all(&self.readers).await.map_err(backend)?;
        rows.iter().map(audit_row).collect::<Result<_, _>>().map_err(backend)
    }
}

async fn append_audit_in(tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>, e: AuditEvent) -> DbResult<AuditEntry> {
    let last = sqlx::query("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetch_optional(&mut **tx).await.map_err(backend)?;
    let (seq, prev_hash) = match last {
        Some(r) => (r.try_get::<i64, _>("seq").map_err(backend)? + 1, arr32(&r, "hash").map_err(backend)?),
        None => (1, [0u8; 32]),
    };
    let detail = e.detail.to_string();
    let hash = audit_hash(&prev_hash, seq, e.at_ms, &e.actor, &e.action, e.attempt_id, &detail);
    sqlx::query("INSERT INTO audit (seq, at, actor, action, attempt_id, detail, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)")
        .bind(seq)
        .bind(e.at_ms)
        .bind(&e.actor)
        .bind(&e.action)
        .bind(e.attempt_id.map(|a| a.to_string()))
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
async fn compare_and_set_state<'e, E: sqlx::Executor<'e, Database = sqlx::Sqlite>>(
    db: E,
    attempt: Uuid,
    from: AttemptState,
    to: AttemptState,
    at_ms: i64,
) -> DbResult<bool> {
    let done = sqlx::query(
        "UPDATE attempts SET state = ?3, state_changed_at = ?4,
                 ended_at = CASE WHEN ?3 = 'ended' THEN ?4 ELSE ended_at END
             WHERE id = ?1 AND state = ?2",
    )
    .bind(attempt.to_string())
    .bind(from.as_str())
    .bind(to.as_str())
    .bind(at_ms)
    .execute(db)
    .await
    .map_err(backend)?;
    Ok(done.rows_affected() == 1)
}
