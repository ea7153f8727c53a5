//! The schema's migrations (`db-sqlite/migrations/`, numbered as PostgreSQL's), run at
//! connection on the writer.

use crate::error::backend;
use proctor_db::{DbError, DbResult};
use sqlx::SqlitePool;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

pub(crate) async fn run(writer: &SqlitePool) -> DbResult<()> {
    refuse_pre_sqlx_file(writer).await?;
    MIGRATOR
        .run(writer)
        .await
        .map_err(|e| DbError::Backend(format!("migrations: {e}")))
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
