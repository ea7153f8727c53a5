//! SQLite backend on `sqlx`: WAL, `synchronous=FULL` (a commit is on disk before we
//! acknowledge), `secure_delete` (freed pages are zeroed), foreign keys, a busy timeout so
//! that the CLI and a running server share the file. One writer connection (SQLite has one
//! writer anyway; serialising here avoids busy retries) and a pool of readers.

use async_trait::async_trait;
use attempts::compare_and_set_state;
use audit::{append_audit_in, append_audits_in};
use error::backend;
use proctor_db::lifecycle::AttemptState;
use proctor_db::records::*;
use proctor_db::*;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use std::path::Path;
use std::str::FromStr;

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
        // No ping before each use: the database is in this process, a ping tests nothing
        // a query would not, and it was one more hand-off to the connection's thread per
        // statement (issue 22).
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .acquire_timeout(pool.acquire_timeout)
            .connect_with(opts.clone())
            .await
            .map_err(backend)?;
        migrations::run(&writer).await?;
        let readers = SqlitePoolOptions::new()
            .max_connections(pool.max_connections.max(1))
            .test_before_acquire(false)
            .acquire_timeout(pool.acquire_timeout)
            .connect_with(opts.read_only(true))
            .await
            .map_err(backend)?;
        Ok(Self { writer, readers })
    }
}

// The shared row records (`proctor_db::records`) with this backend's column types:
// SQLite keeps UUIDs as text and every integer as i64.
type AttemptRecord = AttemptRec<String, i64>;
type TokenRecord = TokenRec<String, i64>;
type StreamRecord = StreamRec<String>;
type ChunkRecord = ChunkRec<String>;
type StreamAtRecord = StreamAtRec<String>;
type StaffRecord = StaffRec<String, i64>;
type AuditRecord = AuditRec<String>;
type AccountEventRecord = AccountEventRec<String>;
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

mod attempts;
mod audit;
mod error;
mod liveness;
mod media;
mod migrations;
mod packs;
mod retention;
mod reviews;
mod staff;
mod tokens;
