//! SQLite backend: WAL, synchronous=FULL (a commit is on disk before we acknowledge),
//! secure_delete (freed pages are zeroed), busy timeout so the CLI and a running server
//! can share the file.

use super::*;
use rusqlite::{params, Connection, OptionalExtension, Row};
use std::path::Path;
use std::sync::{Arc, Mutex};

const MIGRATIONS: &[&str] = &[
    include_str!("../../../migrations/sqlite/0001_initial.sql"),
    include_str!("../../../migrations/sqlite/0002_lifecycle_and_tokens.sql"),
];

#[derive(Clone)]
pub struct SqliteDatabase {
    conn: Arc<Mutex<Connection>>,
}

fn backend(e: rusqlite::Error) -> DbError {
    match e {
        rusqlite::Error::QueryReturnedNoRows => DbError::NotFound,
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation => DbError::Conflict,
        other => DbError::Backend(other.to_string()),
    }
}

fn uuid_col(r: &Row, i: usize) -> rusqlite::Result<Uuid> {
    let s: String = r.get(i)?;
    Uuid::parse_str(&s).map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e)))
}

fn arr32(r: &Row, i: usize) -> rusqlite::Result<[u8; 32]> {
    let v: Vec<u8> = r.get(i)?;
    v.try_into().map_err(|_| rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Blob, "expected 32 bytes".into()))
}

impl SqliteDatabase {
    pub fn open(path: &Path) -> DbResult<Self> {
        let mut conn = Connection::open(path).map_err(backend)?;
        conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(backend)?;
        conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA secure_delete=ON; PRAGMA foreign_keys=ON;")
            .map_err(backend)?;
        migrate(&mut conn)?;
        Ok(Self { conn: Arc::new(Mutex::new(conn)) })
    }

    async fn call<T: Send + 'static>(&self, f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static) -> DbResult<T> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut c = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut c)
        })
        .await
        .map_err(|e| DbError::Backend(e.to_string()))?
        .map_err(backend)
    }
}

fn migrate(conn: &mut Connection) -> DbResult<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(backend)?;
    let version: usize = tx.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(backend)?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        tx.execute_batch(sql).map_err(backend)?;
        tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1)).map_err(backend)?;
    }
    tx.commit().map_err(backend)
}

const ATTEMPT_COLS: &str = "a.id, a.sitting_id, a.ref, a.kek_epoch, a.wrapped_dek, a.consent_notice, a.consent_at, a.created_at, \
     a.state, a.ended_at, a.token_generation, a.bytes_stored";

fn attempt_row(r: &Row) -> rusqlite::Result<Attempt> {
    let state: String = r.get(8)?;
    Ok(Attempt {
        id: uuid_col(r, 0)?,
        sitting_id: uuid_col(r, 1)?,
        reference: r.get(2)?,
        kek_epoch: r.get(3)?,
        wrapped_dek: r.get(4)?,
        consent_notice: r.get(5)?,
        consent_at_ms: r.get(6)?,
        created_at_ms: r.get(7)?,
        state: state.parse().map_err(|e: String| rusqlite::Error::FromSqlConversionFailure(8, rusqlite::types::Type::Text, e.into()))?,
        ended_at_ms: r.get(9)?,
        token_generation: r.get(10)?,
        bytes_stored: r.get::<_, i64>(11)? as u64,
    })
}

const TOKEN_COLS: &str = "t.attempt_id, t.generation, t.expires_at, t.revoked_at";

fn token_row(r: &Row, at: usize) -> rusqlite::Result<LaunchToken> {
    Ok(LaunchToken { attempt_id: uuid_col(r, at)?, generation: r.get(at + 1)?, expires_at_ms: r.get(at + 2)?, revoked_at_ms: r.get(at + 3)? })
}

const STREAM_COLS: &str = "id, attempt_id, salt, opened_at, ended_at, final_index";

fn stream_row(r: &Row) -> rusqlite::Result<Stream> {
    Ok(Stream {
        id: uuid_col(r, 0)?,
        attempt_id: uuid_col(r, 1)?,
        salt: arr32(r, 2)?,
        opened_at_ms: r.get(3)?,
        ended_at_ms: r.get(4)?,
        final_index: r.get(5)?,
    })
}

const CHUNK_COLS: &str = "stream_id, idx, digest, prev_digest, size, media_start_us, media_end_us, last";

fn chunk_row(r: &Row) -> rusqlite::Result<ChunkRow> {
    Ok(ChunkRow {
        stream_id: uuid_col(r, 0)?,
        index: r.get(1)?,
        digest: arr32(r, 2)?,
        prev_digest: arr32(r, 3)?,
        size: r.get::<_, i64>(4)? as u64,
        media_start_us: r.get::<_, i64>(5)? as u64,
        media_end_us: r.get::<_, i64>(6)? as u64,
        last: r.get(7)?,
    })
}

fn staff_row(r: &Row) -> rusqlite::Result<StaffAccount> {
    let role: String = r.get(2)?;
    let role = crate::domain::Role::parse(&role).map_err(|e| rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Text, e.into()))?;
    Ok(StaffAccount { id: uuid_col(r, 0)?, login: r.get(1)?, role, password_hash: r.get(3)? })
}

fn audit_row(r: &Row) -> rusqlite::Result<AuditEntry> {
    let attempt: Option<String> = r.get(4)?;
    Ok(AuditEntry {
        seq: r.get(0)?,
        at_ms: r.get(1)?,
        actor: r.get(2)?,
        action: r.get(3)?,
        attempt_id: attempt.and_then(|a| Uuid::parse_str(&a).ok()),
        detail: r.get(5)?,
        prev_hash: arr32(r, 6)?,
        hash: arr32(r, 7)?,
    })
}

#[async_trait]
impl Database for SqliteDatabase {
    async fn create_sitting(&self, id: Uuid, reference: &str, at_ms: i64) -> DbResult<()> {
        let reference = reference.to_owned();
        self.call(move |c| c.execute("INSERT INTO sittings (id, ref, created_at) VALUES (?1, ?2, ?3)", params![id.to_string(), reference, at_ms]))
            .await
            .map(|_| ())
    }

    async fn sitting_exists(&self, id: Uuid) -> DbResult<bool> {
        self.call(move |c| c.query_row("SELECT 1 FROM sittings WHERE id = ?1", [id.to_string()], |_| Ok(())).optional())
            .await
            .map(|o| o.is_some())
    }

    async fn create_attempt(&self, a: NewAttempt) -> DbResult<()> {
        self.call(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            tx.execute(
                "INSERT INTO attempts (id, sitting_id, ref, token_hash, token_expires_at, kek_epoch, wrapped_dek, dek_fingerprint, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    a.id.to_string(),
                    a.sitting_id.to_string(),
                    a.reference,
                    a.token_hash.as_slice(),
                    a.token_expires_at_ms,
                    a.kek_epoch,
                    a.wrapped_dek,
                    a.dek_fingerprint,
                    a.created_at_ms
                ],
            )?;
            tx.execute(
                "INSERT INTO launch_tokens (token_hash, attempt_id, generation, issued_at, expires_at) VALUES (?1, ?2, 0, ?3, ?4)",
                params![a.token_hash.as_slice(), a.id.to_string(), a.created_at_ms, a.token_expires_at_ms],
            )?;
            tx.commit()
        })
        .await
    }

    async fn attempt(&self, id: Uuid) -> DbResult<Attempt> {
        self.call(move |c| c.query_row(&format!("SELECT {ATTEMPT_COLS} FROM attempts a WHERE a.id = ?1"), [id.to_string()], attempt_row)).await
    }

    async fn sitting_by_ref(&self, reference: &str) -> DbResult<Uuid> {
        let reference = reference.to_owned();
        self.call(move |c| c.query_row("SELECT id FROM sittings WHERE ref = ?1", [reference], |r| uuid_col(r, 0))).await
    }

    async fn attempt_by_ref(&self, sitting: Uuid, reference: &str) -> DbResult<Attempt> {
        let reference = reference.to_owned();
        self.call(move |c| {
            c.query_row(
                &format!("SELECT {ATTEMPT_COLS} FROM attempts a WHERE a.sitting_id = ?1 AND a.ref = ?2"),
                params![sitting.to_string(), reference],
                attempt_row,
            )
        })
        .await
    }

    async fn attempt_by_token(&self, token_hash: [u8; 32]) -> DbResult<(Attempt, LaunchToken)> {
        self.call(move |c| {
            c.query_row(
                &format!("SELECT {ATTEMPT_COLS}, {TOKEN_COLS} FROM launch_tokens t JOIN attempts a ON a.id = t.attempt_id WHERE t.token_hash = ?1"),
                [token_hash.as_slice()],
                |r| Ok((attempt_row(r)?, token_row(r, 12)?)),
            )
        })
        .await
    }

    async fn token_of(&self, attempt: Uuid, generation: u32) -> DbResult<LaunchToken> {
        self.call(move |c| {
            c.query_row(
                &format!("SELECT {TOKEN_COLS} FROM launch_tokens t WHERE t.attempt_id = ?1 AND t.generation = ?2"),
                params![attempt.to_string(), generation],
                |r| token_row(r, 0),
            )
        })
        .await
    }

    async fn issue_token(&self, attempt: Uuid, generation: u32, token_hash: [u8; 32], issued_at_ms: i64, expires_at_ms: i64) -> DbResult<()> {
        self.call(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            tx.execute(
                "UPDATE launch_tokens SET revoked_at = ?2 WHERE attempt_id = ?1 AND revoked_at IS NULL",
                params![attempt.to_string(), issued_at_ms],
            )?;
            tx.execute(
                "INSERT INTO launch_tokens (token_hash, attempt_id, generation, issued_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![token_hash.as_slice(), attempt.to_string(), generation, issued_at_ms, expires_at_ms],
            )?;
            tx.execute("UPDATE attempts SET token_generation = ?2 WHERE id = ?1", params![attempt.to_string(), generation])?;
            tx.commit()
        })
        .await
    }

    async fn revoke_tokens(&self, attempt: Uuid, at_ms: i64) -> DbResult<u64> {
        self.call(move |c| {
            c.execute("UPDATE launch_tokens SET revoked_at = ?2 WHERE attempt_id = ?1 AND revoked_at IS NULL", params![attempt.to_string(), at_ms])
        })
        .await
        .map(|n| n as u64)
    }

    async fn set_state(&self, attempt: Uuid, from: AttemptState, to: AttemptState, at_ms: i64) -> DbResult<bool> {
        self.call(move |c| {
            c.execute(
                "UPDATE attempts SET state = ?3, state_changed_at = ?4,
                     ended_at = CASE WHEN ?3 = 'ended' THEN ?4 ELSE ended_at END
                 WHERE id = ?1 AND state = ?2",
                params![attempt.to_string(), from.as_str(), to.as_str(), at_ms],
            )
        })
        .await
        .map(|n| n == 1)
    }

    async fn count_streams(&self, attempt: Uuid) -> DbResult<u64> {
        self.call(move |c| c.query_row("SELECT COUNT(*) FROM streams WHERE attempt_id = ?1", [attempt.to_string()], |r| r.get::<_, i64>(0)))
            .await
            .map(|n| n as u64)
    }

    async fn record_consent(&self, attempt: Uuid, notice_version: &str, at_ms: i64) -> DbResult<()> {
        let v = notice_version.to_owned();
        self.call(move |c| {
            c.execute("UPDATE attempts SET consent_notice = ?2, consent_at = ?3 WHERE id = ?1", params![attempt.to_string(), v, at_ms])
        })
        .await
        .map(|_| ())
    }

    async fn open_stream(&self, s: Stream, conn: ConnectionInfo) -> DbResult<()> {
        self.call(move |c| {
            c.execute(
                "INSERT INTO streams (id, attempt_id, salt, opened_at, client_ip, agent_version, os) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![s.id.to_string(), s.attempt_id.to_string(), s.salt.as_slice(), s.opened_at_ms, conn.client_ip, conn.agent_version, conn.os],
            )
        })
        .await
        .map(|_| ())
    }

    async fn stream(&self, id: Uuid) -> DbResult<Stream> {
        self.call(move |c| c.query_row(&format!("SELECT {STREAM_COLS} FROM streams WHERE id = ?1"), [id.to_string()], stream_row)).await
    }

    async fn streams_of(&self, attempt: Uuid) -> DbResult<Vec<Stream>> {
        self.call(move |c| {
            let mut st = c.prepare(&format!("SELECT {STREAM_COLS} FROM streams WHERE attempt_id = ?1 ORDER BY opened_at, id"))?;
            let rows = st.query_map([attempt.to_string()], stream_row)?.collect();
            rows
        })
        .await
    }

    async fn end_stream(&self, id: Uuid, final_index: u32, at_ms: i64) -> DbResult<()> {
        self.call(move |c| {
            c.execute(
                "UPDATE streams SET ended_at = COALESCE(ended_at, ?3), final_index = ?2 WHERE id = ?1",
                params![id.to_string(), final_index, at_ms],
            )
        })
        .await
        .map(|_| ())
    }

    async fn insert_chunk(&self, attempt: Uuid, row: ChunkRow, at_ms: i64) -> DbResult<ChunkInsert> {
        self.call(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let existing: Option<Vec<u8>> = tx
                .query_row("SELECT digest FROM chunks WHERE stream_id = ?1 AND idx = ?2", params![row.stream_id.to_string(), row.index], |r| r.get(0))
                .optional()?;
            let outcome = match existing {
                Some(d) if d == row.digest => ChunkInsert::Duplicate,
                Some(_) => ChunkInsert::Conflict,
                None => {
                    tx.execute(
                        &format!("INSERT INTO chunks ({CHUNK_COLS}, stored_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"),
                        params![
                            row.stream_id.to_string(),
                            row.index,
                            row.digest.as_slice(),
                            row.prev_digest.as_slice(),
                            row.size as i64,
                            row.media_start_us as i64,
                            row.media_end_us as i64,
                            row.last,
                            at_ms
                        ],
                    )?;
                    tx.execute("UPDATE attempts SET bytes_stored = bytes_stored + ?2 WHERE id = ?1", params![attempt.to_string(), row.size as i64])?;
                    ChunkInsert::Created
                }
            };
            tx.commit()?;
            Ok(outcome)
        })
        .await
    }

    async fn chunk(&self, stream: Uuid, index: u32) -> DbResult<ChunkRow> {
        self.call(move |c| {
            c.query_row(
                &format!("SELECT {CHUNK_COLS} FROM chunks WHERE stream_id = ?1 AND idx = ?2"),
                params![stream.to_string(), index],
                chunk_row,
            )
        })
        .await
    }

    async fn chunks_of(&self, stream: Uuid) -> DbResult<Vec<ChunkRow>> {
        self.call(move |c| {
            let mut st = c.prepare(&format!("SELECT {CHUNK_COLS} FROM chunks WHERE stream_id = ?1 ORDER BY idx"))?;
            let rows = st.query_map([stream.to_string()], chunk_row)?.collect();
            rows
        })
        .await
    }

    async fn create_staff(&self, s: StaffAccount, at_ms: i64) -> DbResult<()> {
        self.call(move |c| {
            c.execute(
                "INSERT INTO staff (id, login, role, password_hash, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![s.id.to_string(), s.login, s.role.as_str(), s.password_hash, at_ms],
            )
        })
        .await
        .map(|_| ())
    }

    async fn staff_by_login(&self, login: &str) -> DbResult<StaffAccount> {
        let login = login.to_owned();
        self.call(move |c| c.query_row("SELECT id, login, role, password_hash FROM staff WHERE login = ?1", [login], staff_row)).await
    }

    async fn create_staff_session(&self, token_hash: [u8; 32], staff: Uuid, expires_at_ms: i64) -> DbResult<()> {
        self.call(move |c| {
            c.execute(
                "INSERT INTO staff_sessions (token_hash, staff_id, expires_at) VALUES (?1, ?2, ?3)",
                params![token_hash.as_slice(), staff.to_string(), expires_at_ms],
            )
        })
        .await
        .map(|_| ())
    }

    async fn staff_by_session(&self, token_hash: [u8; 32], now_ms: i64) -> DbResult<StaffAccount> {
        self.call(move |c| {
            c.query_row(
                "SELECT s.id, s.login, s.role, s.password_hash FROM staff_sessions x JOIN staff s ON s.id = x.staff_id
                 WHERE x.token_hash = ?1 AND x.expires_at > ?2",
                params![token_hash.as_slice(), now_ms],
                staff_row,
            )
        })
        .await
    }

    async fn append_audit(&self, e: AuditEvent) -> DbResult<AuditEntry> {
        self.call(move |c| {
            // IMMEDIATE: two appenders must not both chain onto the same predecessor.
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let last: Option<(i64, Vec<u8>)> =
                tx.query_row("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1", [], |r| Ok((r.get(0)?, r.get(1)?))).optional()?;
            let (seq, prev_hash) = match last {
                Some((s, h)) => (s + 1, h.try_into().unwrap_or([0u8; 32])),
                None => (1, [0u8; 32]),
            };
            let detail = e.detail.to_string();
            let hash = audit_hash(&prev_hash, seq, e.at_ms, &e.actor, &e.action, e.attempt_id, &detail);
            tx.execute(
                "INSERT INTO audit (seq, at, actor, action, attempt_id, detail, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![seq, e.at_ms, e.actor, e.action, e.attempt_id.map(|a| a.to_string()), detail, prev_hash.as_slice(), hash.as_slice()],
            )?;
            tx.commit()?;
            Ok(AuditEntry { seq, at_ms: e.at_ms, actor: e.actor, action: e.action, attempt_id: e.attempt_id, detail, prev_hash, hash })
        })
        .await
    }

    async fn audit_trail(&self) -> DbResult<Vec<AuditEntry>> {
        self.call(|c| {
            let mut st = c.prepare("SELECT seq, at, actor, action, attempt_id, detail, prev_hash, hash FROM audit ORDER BY seq")?;
            let rows = st.query_map([], audit_row)?.collect();
            rows
        })
        .await
    }
}
