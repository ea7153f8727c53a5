//! The one source of time (DESIGN invariant 8): deadlines are tested by moving a clock.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use time::OffsetDateTime;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> OffsetDateTime;

    /// Milliseconds since the Unix epoch, as the database stores instants.
    fn now_ms(&self) -> i64 {
        unix_ms(self.now())
    }
}

pub type SharedClock = Arc<dyn Clock>;

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// The system clock shifted so that it read `start` when built: time runs, from another
/// moment. What `--now` gives every command (the acceptance checks' injected clock).
pub struct ShiftedClock {
    offset: time::Duration,
}

impl ShiftedClock {
    pub fn starting_at(start: OffsetDateTime) -> Self {
        Self {
            offset: start - OffsetDateTime::now_utc(),
        }
    }
}

impl Clock for ShiftedClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc() + self.offset
    }
}

/// A clock that stands still until moved; for tests.
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn at(t: OffsetDateTime) -> Self {
        Self(AtomicI64::new(
            (t.unix_timestamp_nanos() / 1_000_000) as i64,
        ))
    }
    pub fn advance(&self, d: std::time::Duration) {
        self.0.fetch_add(d.as_millis() as i64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp_nanos(self.0.load(Ordering::SeqCst) as i128 * 1_000_000)
            .expect("valid time")
    }
}

pub fn unix_ms(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .expect("formattable time")
}

pub fn from_unix_ms(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}
