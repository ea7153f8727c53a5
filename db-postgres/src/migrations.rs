//! The schema's migrations (`db-postgres/migrations/`, numbered as SQLite's), run at
//! connection.

use crate::error::backend;
use proctor_db::{DbError, DbResult};
use sqlx::PgPool;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Serialises the numbering fix below across instances starting together ("CLOEMIGR").
const NUMBERING_LOCK: i64 = 0x434c_4f45_4d49_4752;

pub(crate) async fn run(pool: &PgPool) -> DbResult<()> {
    align_numbering(pool).await?;
    MIGRATOR
        .run(pool)
        .await
        .map_err(|e| DbError::Backend(format!("migrations: {e}")))
}

/// Until December 2026 PostgreSQL's migrations were numbered one behind SQLite's (its 0001
/// held SQLite's 0001 and 0002). A database migrated then records versions 2..=10 under the
/// old numbers: shift them up by one and record the placeholder 0002 as applied, once, in
/// one transaction, so that the migrator finds every applied migration where it now is.
/// The files' contents (their checksums) did not change.
async fn align_numbering(pool: &PgPool) -> DbResult<()> {
    let mut tx = pool.begin().await.map_err(backend)?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(NUMBERING_LOCK)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
    // sqlx's bookkeeping table, not the schema: these queries are not checked at compile time.
    let tracked: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
        .fetch_one(&mut *tx)
        .await
        .map_err(backend)?;
    if !tracked {
        return Ok(());
    }
    let second: Option<String> =
        sqlx::query_scalar("SELECT description FROM _sqlx_migrations WHERE version = 2")
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?;
    if second.as_deref() != Some("chunk content hash") {
        return Ok(());
    }
    let placeholder = MIGRATOR
        .iter()
        .find(|m| m.version == 2)
        .expect("the placeholder migration 0002 is embedded");
    // Through negative versions: the primary key forbids shifting in place.
    for sql in [
        "UPDATE _sqlx_migrations SET version = -version WHERE version >= 2",
        "UPDATE _sqlx_migrations SET version = 1 - version WHERE version <= -2",
    ] {
        sqlx::query(sql).execute(&mut *tx).await.map_err(backend)?;
    }
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES ($1, $2, TRUE, $3, 0)",
    )
    .bind(placeholder.version)
    .bind(placeholder.description.as_ref())
    .bind(placeholder.checksum.as_ref())
    .execute(&mut *tx)
    .await
    .map_err(backend)?;
    tx.commit().await.map_err(backend)
}
