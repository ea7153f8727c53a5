//! The server's storage: the `Database` trait and its types (`proctor-db`), one
//! implementation per backend (`proctor-db-sqlite`, `proctor-db-postgres`), each with its
//! own migrations and its own compile-time checked queries. Only those crates know SQL.

pub use proctor_db::*;
pub use proctor_db_postgres::PostgresDatabase;
pub use proctor_db_sqlite::SqliteDatabase;

use std::sync::Arc;
use std::time::Duration;

/// Opens the database a URL names: `sqlite://PATH` (or `sqlite:PATH`) or `postgres://…`.
/// An unreachable database is retried `connect_retries` times with backoff.
pub async fn connect(url: &str, pool: &PoolSettings) -> DbResult<Arc<dyn Database>> {
    use backon::{ExponentialBuilder, Retryable};
    let open = || async {
        let db: Arc<dyn Database> =
            if url.starts_with("postgres://") || url.starts_with("postgresql://") {
                Arc::new(PostgresDatabase::connect(url, pool).await?)
            } else if url.starts_with("sqlite:") {
                Arc::new(SqliteDatabase::connect(url, pool).await?)
            } else {
                return Err(DbError::Backend(
                    "the database URL must start with sqlite: or postgres://".into(),
                ));
            };
        Ok(db)
    };
    open.retry(ExponentialBuilder::default().with_max_times(pool.connect_retries as usize).with_max_delay(Duration::from_secs(10)))
        .when(|e| matches!(e, DbError::Unavailable(_)))
        .notify(|e, d| tracing::warn!(error = %e, wait_ms = d.as_millis() as u64, "database unreachable, retrying"))
        .await
}

/// An opened chunk is the one its row recorded: index, digest, chain and end flag.
pub fn matches_row(o: &protocol::OpenedChunk, row: &ChunkRow) -> bool {
    o.header.index == row.index
        && o.digest == row.digest
        && o.header.prev_digest == row.prev_digest
        && o.header.last == row.last
}
