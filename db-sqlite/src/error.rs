//! SQLite's errors in the storage interface's words.

use proctor_db::DbError;

pub(crate) fn backend(e: sqlx::Error) -> DbError {
    match e {
        sqlx::Error::RowNotFound => DbError::NotFound,
        sqlx::Error::Database(d) if d.is_unique_violation() => DbError::Conflict,
        // SQLITE_BUSY and SQLITE_LOCKED (5, 6): the database is there but not now.
        sqlx::Error::Database(d) if matches!(d.code().as_deref(), Some("5" | "6")) => {
            DbError::Unavailable(d.to_string())
        }
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
            DbError::Unavailable(e.to_string())
        }
        other => DbError::Backend(other.to_string()),
    }
}
