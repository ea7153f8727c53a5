//! SQLite backend on `sqlx`: WAL, `synchronous=FULL` (a commit is on disk before we
//! acknowledge), `secure_delete` (freed pages are zeroed), foreign keys, a busy timeout so
//! that the CLI and a running server share the file. One writer connection (SQLite has one
//! writer anyway; serialising here avoids busy retries) and a pool of readers.

use async_trait::async_trait;
use proctor_db::lifecycle::AttemptState;
use proctor_db::records::*;
use proctor_db::*;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use std::path::Path;
use std::str::FromStr;
use uuid::Uuid;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");

#[derive(Clone)]
pub struct SqliteDatabase {
    writer: SqlitePool,
    readers: SqlitePool,
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
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(pool.acquire_timeout)
            .connect_with(opts.clone())
            .await
            .map_err(backend)?;
        refuse_pre_sqlx_file(&writer).await?;
        MIGRATOR
            .run(&writer)
            .await
            .map_err(|e| DbError::Backend(format!("migrations: {e}")))?;
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
    // A pragma, not the schema: the one query the macros cannot describe.
    let version: i64 = sqlx::query_scalar("PRAGMA user_version")
        .fetch_one(pool)
        .await
        .map_err(backend)?;
    let tracked: i64 =
        sqlx::query_scalar!("SELECT COUNT(*) FROM sqlite_master WHERE name = '_sqlx_migrations'")
            .fetch_one(pool)
            .await
            .map_err(backend)?;
    if version > 0 && tracked == 0 {
        return Err(DbError::Backend("this database was created by an earlier development version; start from an empty data directory".into()));
    }
    Ok(())
}

// The shared row records (`proctor_db::records`) with this backend's column types:
// SQLite keeps UUIDs as text and every integer as i64.
type AttemptRecord = AttemptRec<String, i64>;
type TokenRecord = TokenRec<String, i64>;
type StreamRecord = StreamRec<String>;
type ChunkRecord = ChunkRec<String>;
type StaffRecord = StaffRec<String, i64>;
type AuditRecord = AuditRec<String>;
type ReviewRecord = ReviewRec<String, i64>;
type FlagRecord = FlagRec<String>;

/// `NotFound` when an update touched no row.
fn found(rows: u64) -> DbResult<()> {
    if rows == 0 {
        Err(DbError::NotFound)
    } else {
        Ok(())
    }
}

/// A session's last-seen time is written at most this often (idle expiry's resolution).
const SESSION_TOUCH_MS: i64 = 60_000;

mod retention;

#[async_trait]
impl Database for SqliteDatabase {
    async fn create_sitting(&self, id: Uuid, reference: &str, at_ms: i64) -> DbResult<()> {
        let id = id.to_string();
        sqlx::query!(
            "INSERT INTO sittings (id, ref, created_at) VALUES (?1, ?2, ?3)",
            id,
            reference,
            at_ms
        )
        .execute(&self.writer)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn sitting_exists(&self, id: Uuid) -> DbResult<bool> {
        let id = id.to_string();
        let found =
            sqlx::query_scalar!(r#"SELECT 1 AS "one!: i64" FROM sittings WHERE id = ?1"#, id)
                .fetch_optional(&self.readers)
                .await
                .map_err(backend)?;
        Ok(found.is_some())
    }

    async fn create_attempt(&self, a: NewAttempt) -> DbResult<()> {
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(backend)?;
        let (id, sitting_id, reference, token_hash, kek_epoch, wrapped_dek, dek_fingerprint) = (
            a.id.to_string(),
            a.sitting_id.to_string(),
            &a.reference,
            a.token_hash.as_slice(),
            &a.kek_epoch,
            &a.wrapped_dek,
            &a.dek_fingerprint,
        );
        sqlx::query!(
            "INSERT INTO attempts (id, sitting_id, ref, token_hash, token_expires_at, kek_epoch, wrapped_dek, dek_fingerprint, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            id,
            sitting_id,
            reference,
            token_hash,
            a.token_expires_at_ms,
            kek_epoch,
            wrapped_dek,
            dek_fingerprint,
            a.created_at_ms
        )
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        let (token_hash, id) = (a.token_hash.as_slice(), a.id.to_string());
        sqlx::query!(
            "INSERT INTO launch_tokens (token_hash, attempt_id, generation, issued_at, expires_at) VALUES (?1, ?2, 0, ?3, ?4)",
            token_hash,
            id,
            a.created_at_ms,
            a.token_expires_at_ms
        )
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)
    }

    async fn attempt(&self, id: Uuid) -> DbResult<Attempt> {
        let id = id.to_string();
        parse(sqlx::query_as!(AttemptRecord, r#"SELECT a.id AS "id!", a.sitting_id AS "sitting_id!", a.ref AS "reference!", a.kek_epoch AS "kek_epoch!", a.wrapped_dek AS "wrapped_dek!", a.consent_notice, a.consent_at, a.created_at AS "created_at!", a.state AS "state!", a.ended_at, a.token_generation AS "token_generation!", a.bytes_stored AS "bytes_stored!" FROM attempts a WHERE a.id = ?1"#, id).fetch_one(&self.readers).await.map_err(backend)?)
    }

    async fn sitting_by_ref(&self, reference: &str) -> DbResult<Uuid> {
        let id = sqlx::query_scalar!(
            r#"SELECT id AS "id!" FROM sittings WHERE ref = ?1"#,
            reference
        )
        .fetch_one(&self.readers)
        .await
        .map_err(backend)?;
        id.into_uuid("id").map_err(backend)
    }

    async fn attempt_by_ref(&self, sitting: Uuid, reference: &str) -> DbResult<Attempt> {
        let sitting = sitting.to_string();
        parse(sqlx::query_as!(AttemptRecord, r#"SELECT a.id AS "id!", a.sitting_id AS "sitting_id!", a.ref AS "reference!", a.kek_epoch AS "kek_epoch!", a.wrapped_dek AS "wrapped_dek!", a.consent_notice, a.consent_at, a.created_at AS "created_at!", a.state AS "state!", a.ended_at, a.token_generation AS "token_generation!", a.bytes_stored AS "bytes_stored!" FROM attempts a WHERE a.sitting_id = ?1 AND a.ref = ?2"#, sitting, reference).fetch_one(&self.readers).await.map_err(backend)?)
    }

    async fn attempt_by_token(&self, token_hash: [u8; 32]) -> DbResult<(Attempt, LaunchToken)> {
        let hash = token_hash.as_slice();
        // Every authenticated request asks this: one statement, not two.
        let r = sqlx::query!(
            r#"SELECT a.id AS "id!", a.sitting_id AS "sitting_id!", a.ref AS "reference!", a.kek_epoch AS "kek_epoch!", a.wrapped_dek AS "wrapped_dek!",
                      a.consent_notice, a.consent_at, a.created_at AS "created_at!", a.state AS "state!", a.ended_at,
                      a.token_generation AS "token_generation!", a.bytes_stored AS "bytes_stored!",
                      t.attempt_id AS "attempt_id!", t.generation AS "generation!", t.expires_at AS "expires_at!", t.revoked_at
               FROM launch_tokens t JOIN attempts a ON a.id = t.attempt_id WHERE t.token_hash = ?1"#,
            hash
        )
        .fetch_one(&self.readers)
        .await
        .map_err(backend)?;
        let token = parse(TokenRecord {
            attempt_id: r.attempt_id,
            generation: r.generation,
            expires_at: r.expires_at,
            revoked_at: r.revoked_at,
        })?;
        let attempt = parse(AttemptRecord {
            id: r.id,
            sitting_id: r.sitting_id,
            reference: r.reference,
            kek_epoch: r.kek_epoch,
            wrapped_dek: r.wrapped_dek,
            consent_notice: r.consent_notice,
            consent_at: r.consent_at,
            created_at: r.created_at,
            state: r.state,
            ended_at: r.ended_at,
            token_generation: r.token_generation,
            bytes_stored: r.bytes_stored,
        })?;
        Ok((attempt, token))
    }

    async fn token_of(&self, attempt: Uuid, generation: u32) -> DbResult<LaunchToken> {
        let (attempt, generation) = (attempt.to_string(), generation as i64);
        parse(sqlx::query_as!(TokenRecord, r#"SELECT t.attempt_id AS "attempt_id!", t.generation AS "generation!", t.expires_at AS "expires_at!", t.revoked_at FROM launch_tokens t WHERE t.attempt_id = ?1 AND t.generation = ?2"#, attempt, generation).fetch_one(&self.readers).await.map_err(backend)?)
    }

    async fn issue_token(
        &self,
        attempt: Uuid,
        generation: u32,
        token_hash: [u8; 32],
        issued_at_ms: i64,
        expires_at_ms: i64,
    ) -> DbResult<()> {
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(backend)?;
        let attempt = attempt.to_string();
        sqlx::query!(
            "UPDATE launch_tokens SET revoked_at = ?2 WHERE attempt_id = ?1 AND revoked_at IS NULL",
            attempt,
            issued_at_ms
        )
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        let (token_hash, attempt, generation) = (
            token_hash.as_slice(),
            attempt.to_string(),
            generation as i64,
        );
        sqlx::query!(
            "INSERT INTO launch_tokens (token_hash, attempt_id, generation, issued_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            token_hash,
            attempt,
            generation,
            issued_at_ms,
            expires_at_ms
        )
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        let (attempt, generation) = (attempt.to_string(), generation as i64);
        sqlx::query!(
            "UPDATE attempts SET token_generation = ?2 WHERE id = ?1",
            attempt,
            generation
        )
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)
    }

    async fn revoke_tokens(&self, attempt: Uuid, at_ms: i64) -> DbResult<u64> {
        let attempt = attempt.to_string();
        let done = sqlx::query!(
            "UPDATE launch_tokens SET revoked_at = ?2 WHERE attempt_id = ?1 AND revoked_at IS NULL",
            attempt,
            at_ms
        )
        .execute(&self.writer)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected())
    }

    async fn create_launch_code(
        &self,
        code_hash: [u8; 32],
        attempt: Uuid,
        expires_at_ms: i64,
    ) -> DbResult<()> {
        let (code_hash, attempt) = (code_hash.as_slice(), attempt.to_string());
        sqlx::query!(
            "INSERT INTO launch_codes (code_hash, attempt_id, expires_at) VALUES (?1, ?2, ?3)",
            code_hash,
            attempt,
            expires_at_ms
        )
        .execute(&self.writer)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn redeem_launch_code(&self, code_hash: [u8; 32], now_ms: i64) -> DbResult<Option<Uuid>> {
        let code_hash = code_hash.as_slice();
        let row = sqlx::query_scalar!(
            "UPDATE launch_codes SET used_at = ?2 WHERE code_hash = ?1 AND used_at IS NULL AND expires_at > ?2 RETURNING attempt_id",
            code_hash,
            now_ms
        )
        .fetch_optional(&self.writer)
        .await
        .map_err(backend)?;
        row.map(|a| {
            a.parse::<Uuid>()
                .map_err(|e| DbError::Backend(format!("launch code's attempt id: {e}")))
        })
        .transpose()
    }

    async fn record_consent(
        &self,
        attempt: Uuid,
        notice_version: &str,
        at_ms: i64,
    ) -> DbResult<()> {
        let attempt = attempt.to_string();
        sqlx::query!(
            "UPDATE attempts SET consent_notice = ?2, consent_at = ?3 WHERE id = ?1",
            attempt,
            notice_version,
            at_ms
        )
        .execute(&self.writer)
        .await
        .map_err(backend)?;
        Ok(())
    }

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

    async fn stream(&self, id: Uuid) -> DbResult<Stream> {
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

    async fn agent_heard(&self, attempt: Uuid, at_ms: i64) -> DbResult<Option<i64>> {
        let id = attempt.to_string();
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(backend)?;
        let silent: Option<i64> =
            sqlx::query_scalar!("SELECT silent_since FROM attempts WHERE id = ?1", id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(backend)?
                .flatten();
        sqlx::query!("UPDATE attempts SET last_heard_at = MAX(COALESCE(last_heard_at, 0), ?2), silent_since = NULL WHERE id = ?1", id, at_ms)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        if let Some(from) = silent {
            sqlx::query!("UPDATE agent_silences SET to_ms = ?3 WHERE attempt_id = ?1 AND from_ms = ?2 AND to_ms IS NULL", id, from, at_ms)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(silent)
    }

    async fn mark_silent_agents(&self, before_ms: i64) -> DbResult<Vec<(Uuid, i64)>> {
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(backend)?;
        let rows = sqlx::query!(
            r#"UPDATE attempts SET silent_since = COALESCE(last_heard_at, consent_at)
               WHERE state IN ('consented', 'recording') AND silent_since IS NULL AND COALESCE(last_heard_at, consent_at) < ?1
               RETURNING id AS "id!: String", silent_since AS "since!: i64""#,
            before_ms
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(backend)?;
        for r in &rows {
            sqlx::query!("INSERT INTO agent_silences (attempt_id, from_ms) VALUES (?1, ?2) ON CONFLICT DO NOTHING", r.id, r.since)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)?;
        rows.into_iter()
            .map(|r| {
                Ok((
                    r.id.parse()
                        .map_err(|_| DbError::Backend("attempt id".into()))?,
                    r.since,
                ))
            })
            .collect()
    }

    async fn agent_silences(&self, attempt: Uuid) -> DbResult<Vec<(i64, Option<i64>)>> {
        let id = attempt.to_string();
        let rows = sqlx::query!(r#"SELECT from_ms AS "from_ms!", to_ms FROM agent_silences WHERE attempt_id = ?1 ORDER BY from_ms"#, id)
            .fetch_all(&self.readers)
            .await
            .map_err(backend)?;
        Ok(rows.into_iter().map(|r| (r.from_ms, r.to_ms)).collect())
    }

    async fn chunks_by_transport(&self, attempt: Uuid) -> DbResult<Vec<(Transport, u64)>> {
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

    async fn streams_of(&self, attempt: Uuid) -> DbResult<Vec<Stream>> {
        let attempt = attempt.to_string();
        parse_all(sqlx::query_as!(StreamRecord, r#"SELECT id AS "id!", attempt_id AS "attempt_id!", salt AS "salt!", opening, opened_at AS "opened_at!", ended_at, final_index FROM streams WHERE attempt_id = ?1 ORDER BY opened_at, id"#, attempt).fetch_all(&self.readers).await.map_err(backend)?)
    }

    async fn end_stream(&self, id: Uuid, final_index: u32, at_ms: i64) -> DbResult<()> {
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
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(backend)?;
        let mut outcomes = Vec::with_capacity(batch.len());
        // One statement per new chunk and one per attempt: statements, not the commit, are
        // what a batch costs here.
        let mut added: std::collections::BTreeMap<Uuid, u64> = Default::default();
        for NewChunk {
            attempt,
            row,
            transport,
        } in batch
        {
            let (stream, index, size, start, end) = (
                row.stream_id.to_string(),
                row.index as i64,
                row.size as i64,
                row.media_start_us as i64,
                row.media_end_us as i64,
            );
            let (digest, prev, sha, transport) = (
                row.digest.as_slice(),
                row.prev_digest.as_slice(),
                row.content_sha256.as_slice(),
                transport.as_str(),
            );
            let inserted = sqlx::query!(
                "INSERT INTO chunks (stream_id, idx, digest, prev_digest, size, media_start_us, media_end_us, last, content_sha256, stored_at, transport)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) ON CONFLICT DO NOTHING",
                stream,
                index,
                digest,
                prev,
                size,
                start,
                end,
                row.last,
                sha,
                at_ms,
                transport
            )
            .execute(&mut *tx)
            .await
            .map_err(backend)?
            .rows_affected()
                == 1;
            outcomes.push(if inserted {
                *added.entry(*attempt).or_default() += row.size;
                ChunkInsert::Created
            } else {
                let (stream_id, index) = (row.stream_id.to_string(), row.index as i64);
                let stored: Vec<u8> = sqlx::query_scalar!(
                    "SELECT digest FROM chunks WHERE stream_id = ?1 AND idx = ?2",
                    stream_id,
                    index
                )
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
            let (attempt, bytes) = (attempt.to_string(), bytes as i64);
            sqlx::query!(
                "UPDATE attempts SET bytes_stored = bytes_stored + ?2 WHERE id = ?1",
                attempt,
                bytes
            )
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(outcomes)
    }

    async fn chunk(&self, stream: Uuid, index: u32) -> DbResult<ChunkRow> {
        let (stream, index) = (stream.to_string(), index as i64);
        parse(sqlx::query_as!(ChunkRecord, r#"SELECT stream_id AS "stream_id!", idx AS "idx!", digest AS "digest!", prev_digest AS "prev_digest!", size AS "size!", media_start_us AS "media_start_us!", media_end_us AS "media_end_us!", last AS "last!: bool", content_sha256 AS "content_sha256!" FROM chunks WHERE stream_id = ?1 AND idx = ?2"#, stream, index).fetch_one(&self.readers).await.map_err(backend)?)
    }

    async fn chunks_of(&self, stream: Uuid) -> DbResult<Vec<ChunkRow>> {
        let stream = stream.to_string();
        parse_all(sqlx::query_as!(ChunkRecord, r#"SELECT stream_id AS "stream_id!", idx AS "idx!", digest AS "digest!", prev_digest AS "prev_digest!", size AS "size!", media_start_us AS "media_start_us!", media_end_us AS "media_end_us!", last AS "last!: bool", content_sha256 AS "content_sha256!" FROM chunks WHERE stream_id = ?1 ORDER BY idx"#, stream).fetch_all(&self.readers).await.map_err(backend)?)
    }

    async fn create_staff(&self, s: StaffAccount, at_ms: i64) -> DbResult<()> {
        let (id, login, role, password_hash) = (
            s.id.to_string(),
            &s.login,
            s.role.as_str(),
            &s.password_hash,
        );
        let must_change = s.must_change_password as i64;
        sqlx::query!(
            "INSERT INTO staff (id, login, role, password_hash, created_at, must_change_password, password_changed_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            id,
            login,
            role,
            password_hash,
            at_ms,
            must_change,
            s.password_changed_at_ms
        )
        .execute(&self.writer)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn staff_by_login(&self, login: &str) -> DbResult<StaffAccount> {
        parse(sqlx::query_as!(StaffRecord, r#"SELECT id AS "id!", login AS "login!", role AS "role!", password_hash AS "password_hash!", disabled_at, must_change_password AS "must_change_password!", password_changed_at AS "password_changed_at!", totp_secret FROM staff WHERE login = ?1"#, login).fetch_one(&self.readers).await.map_err(backend)?)
    }

    async fn staff_by_id(&self, id: Uuid) -> DbResult<StaffAccount> {
        let id = id.to_string();
        parse(sqlx::query_as!(StaffRecord, r#"SELECT id AS "id!", login AS "login!", role AS "role!", password_hash AS "password_hash!", disabled_at, must_change_password AS "must_change_password!", password_changed_at AS "password_changed_at!", totp_secret FROM staff WHERE id = ?1"#, id).fetch_one(&self.readers).await.map_err(backend)?)
    }

    async fn list_staff(&self) -> DbResult<Vec<StaffAccount>> {
        parse_all(sqlx::query_as!(StaffRecord, r#"SELECT id AS "id!", login AS "login!", role AS "role!", password_hash AS "password_hash!", disabled_at, must_change_password AS "must_change_password!", password_changed_at AS "password_changed_at!", totp_secret FROM staff ORDER BY login"#).fetch_all(&self.readers).await.map_err(backend)?)
    }

    async fn set_password(
        &self,
        staff: Uuid,
        password_hash: &str,
        must_change: bool,
        at_ms: i64,
    ) -> DbResult<()> {
        let (staff, must_change) = (staff.to_string(), must_change as i64);
        let done = sqlx::query!("UPDATE staff SET password_hash = ?1, must_change_password = ?2, password_changed_at = ?3 WHERE id = ?4", password_hash, must_change, at_ms, staff)
            .execute(&self.writer)
            .await
            .map_err(backend)?;
        found(done.rows_affected())
    }

    async fn set_disabled(&self, staff: Uuid, disabled_at_ms: Option<i64>) -> DbResult<()> {
        let staff = staff.to_string();
        let done = sqlx::query!(
            "UPDATE staff SET disabled_at = ?1 WHERE id = ?2",
            disabled_at_ms,
            staff
        )
        .execute(&self.writer)
        .await
        .map_err(backend)?;
        found(done.rows_affected())
    }

    async fn set_totp(&self, staff: Uuid, sealed_secret: Option<Vec<u8>>) -> DbResult<()> {
        let staff = staff.to_string();
        let done = sqlx::query!(
            "UPDATE staff SET totp_secret = ?1, totp_last_step = NULL WHERE id = ?2",
            sealed_secret,
            staff
        )
        .execute(&self.writer)
        .await
        .map_err(backend)?;
        found(done.rows_affected())
    }

    async fn use_totp_step(&self, staff: Uuid, step: i64) -> DbResult<bool> {
        let staff = staff.to_string();
        let done = sqlx::query!("UPDATE staff SET totp_last_step = ?1 WHERE id = ?2 AND (totp_last_step IS NULL OR totp_last_step < ?1)", step, staff)
            .execute(&self.writer)
            .await
            .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }

    async fn end_sessions_of(&self, staff: Uuid, keep: Option<[u8; 32]>) -> DbResult<()> {
        let (staff, keep) = (staff.to_string(), keep.unwrap_or([0; 32]).to_vec());
        sqlx::query!(
            "DELETE FROM staff_sessions WHERE staff_id = ?1 AND token_hash <> ?2",
            staff,
            keep
        )
        .execute(&self.writer)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn setting(&self, key: &str) -> DbResult<Option<String>> {
        sqlx::query_scalar!(
            r#"SELECT value AS "value!" FROM settings WHERE key = ?1"#,
            key
        )
        .fetch_optional(&self.readers)
        .await
        .map_err(backend)
    }

    async fn set_setting(&self, key: &str, value: &str) -> DbResult<()> {
        sqlx::query!("INSERT INTO settings (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value", key, value)
            .execute(&self.writer)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn assign_sitting(&self, staff: Uuid, sitting: Uuid, at_ms: i64) -> DbResult<()> {
        let (staff, sitting) = (staff.to_string(), sitting.to_string());
        sqlx::query!("INSERT INTO sitting_assignments (staff_id, sitting_id, assigned_at) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING", staff, sitting, at_ms)
            .execute(&self.writer)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn is_assigned(&self, staff: Uuid, sitting: Uuid) -> DbResult<bool> {
        let (staff, sitting) = (staff.to_string(), sitting.to_string());
        let found = sqlx::query_scalar!(r#"SELECT 1 AS "one!: i64" FROM sitting_assignments WHERE staff_id = ?1 AND sitting_id = ?2"#, staff, sitting)
            .fetch_optional(&self.readers)
            .await
            .map_err(backend)?;
        Ok(found.is_some())
    }

    async fn create_staff_session(
        &self,
        token_hash: [u8; 32],
        staff: Uuid,
        now_ms: i64,
        expires_at_ms: i64,
    ) -> DbResult<()> {
        let (token_hash, staff) = (token_hash.as_slice(), staff.to_string());
        sqlx::query!("INSERT INTO staff_sessions (token_hash, staff_id, expires_at, last_seen_at) VALUES (?1, ?2, ?3, ?4)", token_hash, staff, expires_at_ms, now_ms)
            .execute(&self.writer)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn staff_by_session(
        &self,
        token_hash: [u8; 32],
        now_ms: i64,
        idle_ms: i64,
    ) -> DbResult<StaffAccount> {
        let hash = token_hash.as_slice();
        let idle_since = now_ms - idle_ms;
        let r = sqlx::query!(
            r#"SELECT staff_id AS "staff_id!", last_seen_at AS "last_seen_at!" FROM staff_sessions WHERE token_hash = ?1 AND expires_at > ?2 AND last_seen_at > ?3"#,
            hash,
            now_ms,
            idle_since
        )
        .fetch_one(&self.readers)
        .await
        .map_err(backend)?;
        if r.last_seen_at < now_ms - SESSION_TOUCH_MS {
            sqlx::query!(
                "UPDATE staff_sessions SET last_seen_at = ?1 WHERE token_hash = ?2",
                now_ms,
                hash
            )
            .execute(&self.writer)
            .await
            .map_err(backend)?;
        }
        self.staff_by_id(r.staff_id.into_uuid("staff_id").map_err(backend)?)
            .await
    }

    async fn end_staff_session(&self, token_hash: [u8; 32]) -> DbResult<()> {
        let hash = token_hash.as_slice();
        sqlx::query!("DELETE FROM staff_sessions WHERE token_hash = ?1", hash)
            .execute(&self.writer)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn sittings_of_staff(&self, staff: Uuid) -> DbResult<Vec<(Uuid, String)>> {
        let staff = staff.to_string();
        let rows = sqlx::query!(
            r#"SELECT s.id AS "id!", s.ref AS "reference!" FROM sitting_assignments a JOIN sittings s ON s.id = a.sitting_id WHERE a.staff_id = ?1 ORDER BY s.ref"#,
            staff
        )
        .fetch_all(&self.readers)
        .await
        .map_err(backend)?;
        rows.into_iter()
            .map(|r| Ok((r.id.into_uuid("id").map_err(backend)?, r.reference)))
            .collect()
    }

    async fn attempts_of_sitting(&self, sitting: Uuid) -> DbResult<Vec<Attempt>> {
        let sitting = sitting.to_string();
        parse_all(sqlx::query_as!(AttemptRecord, r#"SELECT a.id AS "id!", a.sitting_id AS "sitting_id!", a.ref AS "reference!", a.kek_epoch AS "kek_epoch!", a.wrapped_dek AS "wrapped_dek!", a.consent_notice, a.consent_at, a.created_at AS "created_at!", a.state AS "state!", a.ended_at, a.token_generation AS "token_generation!", a.bytes_stored AS "bytes_stored!" FROM attempts a WHERE a.sitting_id = ?1 ORDER BY a.ref"#, sitting).fetch_all(&self.readers).await.map_err(backend)?)
    }

    async fn reviews_of(&self, attempt: Uuid) -> DbResult<Vec<Review>> {
        let attempt = attempt.to_string();
        parse_all(
            sqlx::query_as!(
                ReviewRecord,
                r#"SELECT id AS "id!", attempt_id AS "attempt_id!", round AS "round!", reviewer_id AS "reviewer_id!", started_at AS "started_at!", submitted_at, outcome
                   FROM reviews WHERE attempt_id = ?1 ORDER BY round"#,
                attempt
            )
            .fetch_all(&self.readers)
            .await
            .map_err(backend)?,
        )
    }

    async fn create_review(&self, r: Review) -> DbResult<()> {
        let (id, attempt, reviewer, round) = (
            r.id.to_string(),
            r.attempt_id.to_string(),
            r.reviewer_id.to_string(),
            r.round as i64,
        );
        let outcome = r.outcome.map(|o| o.as_str());
        sqlx::query!(
            "INSERT INTO reviews (id, attempt_id, round, reviewer_id, started_at, submitted_at, outcome) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            id,
            attempt,
            round,
            reviewer,
            r.started_at_ms,
            r.submitted_at_ms,
            outcome
        )
        .execute(&self.writer)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn submit_review(
        &self,
        review: Uuid,
        outcome: ReviewOutcome,
        at_ms: i64,
    ) -> DbResult<Submit> {
        let (review, outcome_text) = (review.to_string(), outcome.as_str());
        // The single writer, in an immediate transaction: no flag write runs in between.
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(backend)?;
        let open = sqlx::query_scalar!(
            r#"SELECT submitted_at IS NULL AS "open!: bool" FROM reviews WHERE id = ?1"#,
            review
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(backend)?;
        if !open {
            return Ok(Submit::AlreadySubmitted);
        }
        let flags = sqlx::query_scalar!(
            r#"SELECT COUNT(*) AS "n!: i64" FROM flags WHERE review_id = ?1"#,
            review
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(backend)?;
        match (outcome, flags) {
            (ReviewOutcome::NoIrregularity, n) if n > 0 => return Ok(Submit::Disagrees(n as u32)),
            (ReviewOutcome::Irregularities, 0) => return Ok(Submit::Disagrees(0)),
            _ => {}
        }
        sqlx::query!(
            "UPDATE reviews SET submitted_at = ?1, outcome = ?2 WHERE id = ?3",
            at_ms,
            outcome_text,
            review
        )
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(Submit::Submitted(flags as u32))
    }

    async fn flags_of(&self, attempt: Uuid) -> DbResult<Vec<Flag>> {
        let attempt = attempt.to_string();
        parse_all(
            sqlx::query_as!(
                FlagRecord,
                r#"SELECT id AS "id!", review_id AS "review_id!", attempt_id AS "attempt_id!", start_at AS "start_at!", end_at AS "end_at!", category AS "category!",
                          severity AS "severity!", note AS "note!", updated_at AS "updated_at!"
                   FROM flags WHERE attempt_id = ?1 ORDER BY start_at, id"#,
                attempt
            )
            .fetch_all(&self.readers)
            .await
            .map_err(backend)?,
        )
    }

    async fn save_flag(&self, f: Flag) -> DbResult<bool> {
        let (id, review, attempt) = (
            f.id.to_string(),
            f.review_id.to_string(),
            f.attempt_id.to_string(),
        );
        let (category, severity) = (f.category.as_str(), f.severity.as_str());
        let done = sqlx::query!(
            "INSERT INTO flags (id, review_id, attempt_id, start_at, end_at, category, severity, note, updated_at)
             SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9 WHERE EXISTS (SELECT 1 FROM reviews WHERE id = ?2 AND attempt_id = ?3 AND submitted_at IS NULL)
             ON CONFLICT (id) DO UPDATE SET start_at = excluded.start_at, end_at = excluded.end_at, category = excluded.category,
                 severity = excluded.severity, note = excluded.note, updated_at = excluded.updated_at
             WHERE flags.review_id = excluded.review_id",
            id,
            review,
            attempt,
            f.start_ms,
            f.end_ms,
            category,
            severity,
            f.note,
            f.updated_at_ms
        )
        .execute(&self.writer)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_flag(&self, review: Uuid, flag: Uuid) -> DbResult<bool> {
        let (review, flag) = (review.to_string(), flag.to_string());
        let done = sqlx::query!(
            "DELETE FROM flags WHERE id = ?1 AND review_id = ?2 AND EXISTS (SELECT 1 FROM reviews WHERE id = ?2 AND submitted_at IS NULL)",
            flag,
            review
        )
        .execute(&self.writer)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }

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

    async fn set_state_audited(
        &self,
        attempt: Uuid,
        from: AttemptState,
        to: AttemptState,
        at_ms: i64,
        event: AuditEvent,
    ) -> DbResult<Option<AuditEntry>> {
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(backend)?;
        if !compare_and_set_state(&mut *tx, attempt, from, to, at_ms).await? {
            return Ok(None);
        }
        let entry = append_audit_in(&mut tx, event).await?;
        tx.commit().await.map_err(backend)?;
        Ok(Some(entry))
    }

    async fn audit_of(&self, attempt: Uuid) -> DbResult<Vec<AuditEntry>> {
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
}

async fn append_audit_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    e: AuditEvent,
) -> DbResult<AuditEntry> {
    append_audits_in(tx, vec![e])
        .await?
        .pop()
        .ok_or_else(|| DbError::Backend("no audit entry appended".into()))
}

/// Appends events to the chain in one statement (a destruction batch writes a thousand).
async fn append_audits_in(
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
        .map(|r| Ok::<_, DbError>((r.seq, arr32("hash", r.hash).map_err(backend)?)))
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

/// The attempt's state moves from `from` to `to` only if it still is `from`; `ended_at`
/// is stamped when it becomes `ended`.
async fn compare_and_set_state<'e, E: sqlx::Executor<'e, Database = sqlx::Sqlite>>(
    db: E,
    attempt: Uuid,
    from: AttemptState,
    to: AttemptState,
    at_ms: i64,
) -> DbResult<bool> {
    let (attempt, from, to) = (attempt.to_string(), from.as_str(), to.as_str());
    let done = sqlx::query!(
        "UPDATE attempts SET state = ?3, state_changed_at = ?4, ended_at = CASE WHEN ?3 = 'ended' THEN ?4 ELSE ended_at END
         WHERE id = ?1 AND state = ?2",
        attempt,
        from,
        to,
        at_ms
    )
    .execute(db)
    .await
    .map_err(backend)?;
    Ok(done.rows_affected() == 1)
}
