//! PostgreSQL's errors in the storage interface's words.

use proctor_db::DbError;

pub(crate) fn backend(e: sqlx::Error) -> DbError {
    match e {
        sqlx::Error::RowNotFound => DbError::NotFound,
        sqlx::Error::Database(d) if d.is_unique_violation() => DbError::Conflict,
        // Statement timeout (57014, query_canceled), deadlock (40P01) and serialization
        // failure (40001): the database is there but not now.
        sqlx::Error::Database(d)
            if matches!(d.code().as_deref(), Some("57014" | "40P01" | "40001")) =>
        {
            DbError::Unavailable(d.to_string())
        }
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_) => DbError::Unavailable(e.to_string()),
        other => DbError::Backend(other.to_string()),
    }
}
