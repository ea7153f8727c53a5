//! PostgreSQL backend on `sqlx`, for several server instances on one database. A commit is
//! durable before we acknowledge (the server's default `synchronous_commit = on`); audit
//! appenders are serialised across instances by a transaction-scoped advisory lock;
//! every statement has a timeout.

use async_trait::async_trait;
use proctor_db::lifecycle::AttemptState;
use proctor_db::records::*;
use proctor_db::*;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use std::str::FromStr;
use uuid::Uuid;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

/// The advisory lock key that serialises audit appends ("CLOEAUDT").
const AUDIT_LOCK: i64 = 0x434c_4f45_4155_4454;

#[derive(Clone)]
pub struct PostgresDatabase {
    pool: PgPool,
}

impl PostgresDatabase {
    pub async fn connect(url: &str, pool: &PoolSettings) -> DbResult<Self> {
        let timeout_ms = pool.statement_timeout.as_millis().to_string();
        let opts = PgConnectOptions::from_str(url)
            .map_err(backend)?
            .options([("statement_timeout", timeout_ms.as_str())]);
        let pool = PgPoolOptions::new()
            .max_connections(pool.max_connections.max(1))
            .acquire_timeout(pool.acquire_timeout)
            .connect_with(opts)
            .await
            .map_err(backend)?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| DbError::Backend(format!("migrations: {e}")))?;
        Ok(Self { pool })
    }
}

// The shared row records (`proctor_db::records`) with this backend's column types:
// native UUIDs; INTEGER columns are i32.
type AttemptRecord = AttemptRec<Uuid, i32>;
type TokenRecord = TokenRec<Uuid, i32>;
type StreamRecord = StreamRec<Uuid>;
type ChunkRecord = ChunkRec<Uuid>;
type StaffRecord = StaffRec<Uuid, bool>;
type AuditRecord = AuditRec<Uuid>;
type ReviewRecord = ReviewRec<Uuid, i32>;
type FlagRecord = FlagRec<Uuid>;

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
impl Database for PostgresDatabase {
    async fn create_sitting(&self, id: Uuid, reference: &str, at_ms: i64) -> DbResult<()> {
        sqlx::query!(
            "INSERT INTO sittings (id, ref, created_at) VALUES ($1, $2, $3)",
            id,
            reference,
            at_ms
        )
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn sitting_exists(&self, id: Uuid) -> DbResult<bool> {
        Ok(
            sqlx::query_scalar!(r#"SELECT 1 AS "one!" FROM sittings WHERE id = $1"#, id)
                .fetch_optional(&self.pool)
                .await
                .map_err(backend)?
                .is_some(),
        )
    }

    async fn create_attempt(&self, a: NewAttempt) -> DbResult<()> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        sqlx::query!(
            "INSERT INTO attempts (id, sitting_id, ref, kek_epoch, wrapped_dek, dek_fingerprint, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            a.id,
            a.sitting_id,
            &a.reference,
            &a.kek_epoch,
            &a.wrapped_dek,
            &a.dek_fingerprint,
            a.created_at_ms
        )
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        let token_hash = a.token_hash.as_slice();
        sqlx::query!(
            "INSERT INTO launch_tokens (token_hash, attempt_id, generation, issued_at, expires_at) VALUES ($1, $2, 0, $3, $4)",
            token_hash,
            a.id,
            a.created_at_ms,
            a.token_expires_at_ms
        )
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)
    }

    async fn attempt(&self, id: Uuid) -> DbResult<Attempt> {
        parse(sqlx::query_as!(AttemptRecord, "SELECT a.id, a.sitting_id, a.ref AS reference, a.kek_epoch, a.wrapped_dek, a.consent_notice, a.consent_at, a.created_at, a.state, a.ended_at, a.token_generation, a.bytes_stored FROM attempts a WHERE a.id = $1", id).fetch_one(&self.pool).await.map_err(backend)?)
    }

    async fn sitting_by_ref(&self, reference: &str) -> DbResult<Uuid> {
        sqlx::query_scalar!("SELECT id FROM sittings WHERE ref = $1", reference)
            .fetch_one(&self.pool)
            .await
            .map_err(backend)
    }

    async fn attempt_by_ref(&self, sitting: Uuid, reference: &str) -> DbResult<Attempt> {
        parse(sqlx::query_as!(AttemptRecord, "SELECT a.id, a.sitting_id, a.ref AS reference, a.kek_epoch, a.wrapped_dek, a.consent_notice, a.consent_at, a.created_at, a.state, a.ended_at, a.token_generation, a.bytes_stored FROM attempts a WHERE a.sitting_id = $1 AND a.ref = $2", sitting, reference).fetch_one(&self.pool).await.map_err(backend)?)
    }

    async fn attempt_by_token(&self, token_hash: [u8; 32]) -> DbResult<(Attempt, LaunchToken)> {
        let hash = token_hash.as_slice();
        // Every authenticated request asks this: one statement, not two.
        let r = sqlx::query!(
            "SELECT a.id, a.sitting_id, a.ref AS reference, a.kek_epoch, a.wrapped_dek, a.consent_notice, a.consent_at, a.created_at, a.state, a.ended_at,
                    a.token_generation, a.bytes_stored, t.attempt_id, t.generation, t.expires_at, t.revoked_at
             FROM launch_tokens t JOIN attempts a ON a.id = t.attempt_id WHERE t.token_hash = $1",
            hash
        )
        .fetch_one(&self.pool)
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
        let generation = generation as i32;
        parse(
            sqlx::query_as!(
                TokenRecord,
                "SELECT t.attempt_id, t.generation, t.expires_at, t.revoked_at FROM launch_tokens t WHERE t.attempt_id = $1 AND t.generation = $2",
                attempt,
                generation
            )
            .fetch_one(&self.pool)
            .await
            .map_err(backend)?,
        )
    }

    async fn issue_token(
        &self,
        attempt: Uuid,
        generation: u32,
        token_hash: [u8; 32],
        issued_at_ms: i64,
        expires_at_ms: i64,
    ) -> DbResult<()> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        sqlx::query!(
            "UPDATE launch_tokens SET revoked_at = $2 WHERE attempt_id = $1 AND revoked_at IS NULL",
            attempt,
            issued_at_ms
        )
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        let (token_hash, generation) = (token_hash.as_slice(), generation as i32);
        sqlx::query!(
            "INSERT INTO launch_tokens (token_hash, attempt_id, generation, issued_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
            token_hash,
            attempt,
            generation,
            issued_at_ms,
            expires_at_ms
        )
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        let generation = generation as i32;
        sqlx::query!(
            "UPDATE attempts SET token_generation = $2 WHERE id = $1",
            attempt,
            generation
        )
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)
    }

    async fn revoke_tokens(&self, attempt: Uuid, at_ms: i64) -> DbResult<u64> {
        let done = sqlx::query!(
            "UPDATE launch_tokens SET revoked_at = $2 WHERE attempt_id = $1 AND revoked_at IS NULL",
            attempt,
            at_ms
        )
        .execute(&self.pool)
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
        sqlx::query!(
            "INSERT INTO launch_codes (code_hash, attempt_id, expires_at) VALUES ($1, $2, $3)",
            code_hash.as_slice(),
            attempt,
            expires_at_ms
        )
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn redeem_launch_code(&self, code_hash: [u8; 32], now_ms: i64) -> DbResult<Option<Uuid>> {
        sqlx::query_scalar!(
            "UPDATE launch_codes SET used_at = $2 WHERE code_hash = $1 AND used_at IS NULL AND expires_at > $2 RETURNING attempt_id",
            code_hash.as_slice(),
            now_ms
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)
    }

    async fn record_consent(
        &self,
        attempt: Uuid,
        notice_version: &str,
        at_ms: i64,
    ) -> DbResult<()> {
        sqlx::query!(
            "UPDATE attempts SET consent_notice = $2, consent_at = $3 WHERE id = $1",
            attempt,
            notice_version,
            at_ms
        )
        .execute(&self.pool)
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
        let mut tx = self.pool.begin().await.map_err(backend)?;
        // The attempt's row lock makes concurrent opens of one attempt take turns.
        sqlx::query_scalar!(
            r#"SELECT 1 AS "one!" FROM attempts WHERE id = $1 FOR UPDATE"#,
            s.attempt_id
        )
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?;
        let n: i64 = sqlx::query_scalar!(
            r#"SELECT COUNT(*) AS "n!" FROM streams WHERE attempt_id = $1"#,
            s.attempt_id
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
            s.id,
            s.attempt_id,
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

    async fn stream(&self, id: Uuid) -> DbResult<Stream> {
        parse(
            sqlx::query_as!(StreamRecord, "SELECT id, attempt_id, salt, opening, opened_at, ended_at, final_index FROM streams WHERE id = $1", id)
                .fetch_one(&self.pool)
                .await
                .map_err(backend)?,
        )
    }

    async fn agent_heard(&self, attempt: Uuid, at_ms: i64) -> DbResult<Option<i64>> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let silent: Option<i64> = sqlx::query_scalar!(
            "SELECT silent_since FROM attempts WHERE id = $1 FOR UPDATE",
            attempt
        )
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?
        .flatten();
        sqlx::query!("UPDATE attempts SET last_heard_at = GREATEST(COALESCE(last_heard_at, 0), $2), silent_since = NULL WHERE id = $1", attempt, at_ms)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        if let Some(from) = silent {
            sqlx::query!("UPDATE agent_silences SET to_ms = $3 WHERE attempt_id = $1 AND from_ms = $2 AND to_ms IS NULL", attempt, from, at_ms)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(silent)
    }

    async fn mark_silent_agents(&self, before_ms: i64) -> DbResult<Vec<(Uuid, i64)>> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let rows = sqlx::query!(
            r#"UPDATE attempts SET silent_since = COALESCE(last_heard_at, consent_at)
               WHERE state IN ('consented', 'recording') AND silent_since IS NULL AND COALESCE(last_heard_at, consent_at) < $1
               RETURNING id, silent_since AS "since!""#,
            before_ms
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(backend)?;
        let (ids, froms): (Vec<Uuid>, Vec<i64>) = rows.iter().map(|r| (r.id, r.since)).unzip();
        sqlx::query!(
            "INSERT INTO agent_silences (attempt_id, from_ms) SELECT * FROM UNNEST($1::UUID[], $2::BIGINT[]) ON CONFLICT DO NOTHING",
            &ids,
            &froms
        )
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(ids.into_iter().zip(froms).collect())
    }

    async fn agent_silences(&self, attempt: Uuid) -> DbResult<Vec<(i64, Option<i64>)>> {
        let rows = sqlx::query!(
            "SELECT from_ms, to_ms FROM agent_silences WHERE attempt_id = $1 ORDER BY from_ms",
            attempt
        )
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        Ok(rows.into_iter().map(|r| (r.from_ms, r.to_ms)).collect())
    }

    async fn chunks_by_transport(&self, attempt: Uuid) -> DbResult<Vec<(Transport, u64)>> {
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

    async fn streams_of(&self, attempt: Uuid) -> DbResult<Vec<Stream>> {
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

    async fn end_stream(&self, id: Uuid, final_index: u32, at_ms: i64) -> DbResult<()> {
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
        // Rows are locked in one order on every instance (chunks by attempt, stream and
        // index, then attempts by id), so that two instances' batches wait for each other
        // instead of deadlocking.
        let mut order: Vec<usize> = (0..batch.len()).collect();
        order.sort_by_key(|&i| (batch[i].attempt, batch[i].row.stream_id, batch[i].row.index));
        let mut outcomes = vec![ChunkInsert::Conflict; batch.len()];
        let mut added: std::collections::BTreeMap<Uuid, u64> = Default::default();
        let mut tx = self.pool.begin().await.map_err(backend)?;
        for i in order {
            let NewChunk {
                attempt,
                row,
                transport,
            } = &batch[i];
            // The primary key arbitrates between concurrent uploads, on any instance.
            let (index, size, start, end) = (
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
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (stream_id, idx) DO NOTHING",
                row.stream_id,
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
            outcomes[i] = if inserted {
                *added.entry(*attempt).or_default() += row.size;
                ChunkInsert::Created
            } else {
                let index = row.index as i64;
                let stored: Vec<u8> = sqlx::query_scalar!(
                    "SELECT digest FROM chunks WHERE stream_id = $1 AND idx = $2",
                    row.stream_id,
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
            };
        }
        // Attempts last, in order too: one update each, however many of its chunks came.
        for (attempt, bytes) in added {
            let bytes = bytes as i64;
            sqlx::query!(
                "UPDATE attempts SET bytes_stored = bytes_stored + $2 WHERE id = $1",
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
        let index = index as i64;
        parse(
            sqlx::query_as!(
                ChunkRecord,
                "SELECT stream_id, idx, digest, prev_digest, size, media_start_us, media_end_us, last, content_sha256 FROM chunks WHERE stream_id = $1 AND idx = $2",
                stream,
                index
            )
            .fetch_one(&self.pool)
            .await
            .map_err(backend)?,
        )
    }

    async fn chunks_of(&self, stream: Uuid) -> DbResult<Vec<ChunkRow>> {
        parse_all(
            sqlx::query_as!(
                ChunkRecord,
                "SELECT stream_id, idx, digest, prev_digest, size, media_start_us, media_end_us, last, content_sha256 FROM chunks WHERE stream_id = $1 ORDER BY idx",
                stream
            )
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?,
        )
    }

    async fn create_staff(&self, s: StaffAccount, at_ms: i64) -> DbResult<()> {
        let role = s.role.as_str();
        sqlx::query!(
            "INSERT INTO staff (id, login, role, password_hash, created_at, must_change_password, password_changed_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            s.id,
            &s.login,
            role,
            &s.password_hash,
            at_ms,
            s.must_change_password,
            s.password_changed_at_ms
        )
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn staff_by_login(&self, login: &str) -> DbResult<StaffAccount> {
        parse(sqlx::query_as!(StaffRecord, "SELECT id, login, role, password_hash, disabled_at, must_change_password, password_changed_at, totp_secret FROM staff WHERE login = $1", login).fetch_one(&self.pool).await.map_err(backend)?)
    }

    async fn staff_by_id(&self, id: Uuid) -> DbResult<StaffAccount> {
        parse(sqlx::query_as!(StaffRecord, "SELECT id, login, role, password_hash, disabled_at, must_change_password, password_changed_at, totp_secret FROM staff WHERE id = $1", id).fetch_one(&self.pool).await.map_err(backend)?)
    }

    async fn list_staff(&self) -> DbResult<Vec<StaffAccount>> {
        parse_all(sqlx::query_as!(StaffRecord, "SELECT id, login, role, password_hash, disabled_at, must_change_password, password_changed_at, totp_secret FROM staff ORDER BY login").fetch_all(&self.pool).await.map_err(backend)?)
    }

    async fn set_password(
        &self,
        staff: Uuid,
        password_hash: &str,
        must_change: bool,
        at_ms: i64,
    ) -> DbResult<()> {
        let done = sqlx::query!("UPDATE staff SET password_hash = $1, must_change_password = $2, password_changed_at = $3 WHERE id = $4", password_hash, must_change, at_ms, staff)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        found(done.rows_affected())
    }

    async fn set_disabled(&self, staff: Uuid, disabled_at_ms: Option<i64>) -> DbResult<()> {
        let done = sqlx::query!(
            "UPDATE staff SET disabled_at = $1 WHERE id = $2",
            disabled_at_ms,
            staff
        )
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        found(done.rows_affected())
    }

    async fn set_totp(&self, staff: Uuid, sealed_secret: Option<Vec<u8>>) -> DbResult<()> {
        let done = sqlx::query!(
            "UPDATE staff SET totp_secret = $1, totp_last_step = NULL WHERE id = $2",
            sealed_secret,
            staff
        )
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        found(done.rows_affected())
    }

    async fn use_totp_step(&self, staff: Uuid, step: i64) -> DbResult<bool> {
        let done = sqlx::query!("UPDATE staff SET totp_last_step = $1 WHERE id = $2 AND (totp_last_step IS NULL OR totp_last_step < $1)", step, staff)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }

    async fn end_sessions_of(&self, staff: Uuid, keep: Option<[u8; 32]>) -> DbResult<()> {
        let keep = keep.unwrap_or([0; 32]).to_vec();
        sqlx::query!(
            "DELETE FROM staff_sessions WHERE staff_id = $1 AND token_hash <> $2",
            staff,
            keep
        )
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn setting(&self, key: &str) -> DbResult<Option<String>> {
        sqlx::query_scalar!("SELECT value FROM settings WHERE key = $1", key)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)
    }

    async fn set_setting(&self, key: &str, value: &str) -> DbResult<()> {
        sqlx::query!("INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value", key, value)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn assign_sitting(&self, staff: Uuid, sitting: Uuid, at_ms: i64) -> DbResult<()> {
        sqlx::query!("INSERT INTO sitting_assignments (staff_id, sitting_id, assigned_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING", staff, sitting, at_ms)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn is_assigned(&self, staff: Uuid, sitting: Uuid) -> DbResult<bool> {
        let found = sqlx::query_scalar!(r#"SELECT 1 AS "one!" FROM sitting_assignments WHERE staff_id = $1 AND sitting_id = $2"#, staff, sitting)
            .fetch_optional(&self.pool)
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
        let token_hash = token_hash.as_slice();
        sqlx::query!("INSERT INTO staff_sessions (token_hash, staff_id, expires_at, last_seen_at) VALUES ($1, $2, $3, $4)", token_hash, staff, expires_at_ms, now_ms)
            .execute(&self.pool)
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
        let r = sqlx::query!("SELECT staff_id, last_seen_at FROM staff_sessions WHERE token_hash = $1 AND expires_at > $2 AND last_seen_at > $3", hash, now_ms, idle_since)
            .fetch_one(&self.pool)
            .await
            .map_err(backend)?;
        if r.last_seen_at < now_ms - SESSION_TOUCH_MS {
            sqlx::query!(
                "UPDATE staff_sessions SET last_seen_at = $1 WHERE token_hash = $2",
                now_ms,
                hash
            )
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        }
        self.staff_by_id(r.staff_id).await
    }

    async fn end_staff_session(&self, token_hash: [u8; 32]) -> DbResult<()> {
        let hash = token_hash.as_slice();
        sqlx::query!("DELETE FROM staff_sessions WHERE token_hash = $1", hash)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn sittings_of_staff(&self, staff: Uuid) -> DbResult<Vec<(Uuid, String)>> {
        let rows = sqlx::query!("SELECT s.id, s.ref AS reference FROM sitting_assignments a JOIN sittings s ON s.id = a.sitting_id WHERE a.staff_id = $1 ORDER BY s.ref", staff)
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        Ok(rows.into_iter().map(|r| (r.id, r.reference)).collect())
    }

    async fn attempts_of_sitting(&self, sitting: Uuid) -> DbResult<Vec<Attempt>> {
        parse_all(sqlx::query_as!(AttemptRecord, "SELECT a.id, a.sitting_id, a.ref AS reference, a.kek_epoch, a.wrapped_dek, a.consent_notice, a.consent_at, a.created_at, a.state, a.ended_at, a.token_generation, a.bytes_stored FROM attempts a WHERE a.sitting_id = $1 ORDER BY a.ref", sitting).fetch_all(&self.pool).await.map_err(backend)?)
    }

    async fn reviews_of(&self, attempt: Uuid) -> DbResult<Vec<Review>> {
        parse_all(
            sqlx::query_as!(ReviewRecord, "SELECT id, attempt_id, round, reviewer_id, started_at, submitted_at, outcome FROM reviews WHERE attempt_id = $1 ORDER BY round", attempt)
                .fetch_all(&self.pool)
                .await
                .map_err(backend)?,
        )
    }

    async fn create_review(&self, r: Review) -> DbResult<()> {
        let round = r.round as i32;
        let outcome = r.outcome.map(|o| o.as_str());
        sqlx::query!(
            "INSERT INTO reviews (id, attempt_id, round, reviewer_id, started_at, submitted_at, outcome) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            r.id,
            r.attempt_id,
            round,
            r.reviewer_id,
            r.started_at_ms,
            r.submitted_at_ms,
            outcome
        )
        .execute(&self.pool)
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
        let outcome_text = outcome.as_str();
        // The review row locked first (flag writes lock it too), then the flags counted on
        // a fresh snapshot: nothing changes between the count and the update.
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let open = sqlx::query_scalar!(
            r#"SELECT submitted_at IS NULL AS "open!" FROM reviews WHERE id = $1 FOR UPDATE"#,
            review
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(backend)?;
        if !open {
            return Ok(Submit::AlreadySubmitted);
        }
        let flags = sqlx::query_scalar!(
            r#"SELECT COUNT(*) AS "n!" FROM flags WHERE review_id = $1"#,
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
            "UPDATE reviews SET submitted_at = $1, outcome = $2 WHERE id = $3",
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
        parse_all(
            sqlx::query_as!(
                FlagRecord,
                "SELECT id, review_id, attempt_id, start_at, end_at, category, severity, note, updated_at FROM flags WHERE attempt_id = $1 ORDER BY start_at, id",
                attempt
            )
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?,
        )
    }

    async fn save_flag(&self, f: Flag) -> DbResult<bool> {
        let (category, severity) = (f.category.as_str(), f.severity.as_str());
        // The review row is locked (FOR UPDATE) so that a submit cannot slip between the
        // check and the write.
        let done = sqlx::query!(
            "INSERT INTO flags (id, review_id, attempt_id, start_at, end_at, category, severity, note, updated_at)
             SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9 WHERE EXISTS (SELECT 1 FROM reviews WHERE id = $2 AND attempt_id = $3 AND submitted_at IS NULL FOR UPDATE)
             ON CONFLICT (id) DO UPDATE SET start_at = excluded.start_at, end_at = excluded.end_at, category = excluded.category,
                 severity = excluded.severity, note = excluded.note, updated_at = excluded.updated_at
             WHERE flags.review_id = excluded.review_id",
            f.id,
            f.review_id,
            f.attempt_id,
            f.start_ms,
            f.end_ms,
            category,
            severity,
            f.note,
            f.updated_at_ms
        )
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_flag(&self, review: Uuid, flag: Uuid) -> DbResult<bool> {
        let done = sqlx::query!(
            "DELETE FROM flags WHERE id = $1 AND review_id = $2 AND EXISTS (SELECT 1 FROM reviews WHERE id = $2 AND submitted_at IS NULL FOR UPDATE)",
            flag,
            review
        )
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }

    async fn append_audit(&self, e: AuditEvent) -> DbResult<AuditEntry> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
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
        let mut tx = self.pool.begin().await.map_err(backend)?;
        if !compare_and_set_state(&mut *tx, attempt, from, to, at_ms).await? {
            return Ok(None);
        }
        let entry = append_audit_in(&mut tx, event).await?;
        tx.commit().await.map_err(backend)?;
        Ok(Some(entry))
    }

    async fn audit_of(&self, attempt: Uuid) -> DbResult<Vec<AuditEntry>> {
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
}

async fn append_audit_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    e: AuditEvent,
) -> DbResult<AuditEntry> {
    append_audits_in(tx, vec![e])
        .await?
        .pop()
        .ok_or_else(|| DbError::Backend("no audit entry appended".into()))
}

/// Appends events to the chain in one statement (a destruction batch writes a thousand).
async fn append_audits_in(
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
        .map(|r| Ok::<_, DbError>((r.seq, arr32("hash", r.hash).map_err(backend)?)))
        .transpose()?;
    let entries = chain_events(last, events);
    let seqs: Vec<i64> = entries.iter().map(|e| e.seq).collect();
    let ats: Vec<i64> = entries.iter().map(|e| e.at_ms).collect();
    let actors: Vec<String> = entries.iter().map(|e| e.actor.clone()).collect();
    let actions: Vec<String> = entries.iter().map(|e| e.action.clone()).collect();
    let attempts: Vec<Option<Uuid>> = entries.iter().map(|e| e.attempt_id).collect();
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

/// The attempt's state moves from `from` to `to` only if it still is `from`; `ended_at`
/// is stamped when it becomes `ended`.
async fn compare_and_set_state<'e, E: sqlx::Executor<'e, Database = sqlx::Postgres>>(
    db: E,
    attempt: Uuid,
    from: AttemptState,
    to: AttemptState,
    at_ms: i64,
) -> DbResult<bool> {
    let (from, to) = (from.as_str(), to.as_str());
    let done = sqlx::query!(
        "UPDATE attempts SET state = $3::text, state_changed_at = $4,
                 ended_at = CASE WHEN $3::text = 'ended' THEN $4 ELSE ended_at END
             WHERE id = $1 AND state = $2",
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
