//! How far a stream may have got by now, and how many bytes an attempt may have stored:
//! pure functions of wall-clock time, so that a candidate holding the stream key cannot
//! claim an index, a media time or a volume that no real recording could have reached.

/// Fragments are at least `fragment_ms` long (cut on key frames, one per `fragment_ms`);
/// allowing two per period plus a margin leaves room for short fragments and clock skew.
pub fn max_index(opened_at_ms: i64, now_ms: i64, fragment_ms: u32, margin_ms: u64) -> u64 {
    let age = (now_ms - opened_at_ms).max(0) as u64 + margin_ms;
    2 + 2 * age / u64::from(fragment_ms.max(1))
}

/// Media time cannot run faster than wall-clock time; twice as fast plus the margin.
pub fn max_media_us(opened_at_ms: i64, now_ms: i64, margin_ms: u64) -> u64 {
    let age = (now_ms - opened_at_ms).max(0) as u64 + margin_ms;
    age.saturating_mul(2000)
}

/// `multiple` × the nominal bitrate for each started hour since the first stream opened,
/// plus one hour: what an attempt may have stored in all. Counting from when recording
/// began, not from when bytes arrive, means a backlog uploaded late never trips it.
pub fn byte_budget(
    first_stream_opened_ms: i64,
    now_ms: i64,
    bitrate_kbps: u64,
    multiple: u64,
) -> u64 {
    let hours = ((now_ms - first_stream_opened_ms).max(0) as u64).div_ceil(3_600_000) + 1;
    (bitrate_kbps * 1000 / 8)
        .saturating_mul(3600)
        .saturating_mul(multiple)
        .saturating_mul(hours)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_window_grows_with_the_streams_age() {
        // Fresh stream, 2 s fragments, 2 min margin: 2 + 2·120 = 122.
        assert_eq!(max_index(1_000, 1_000, 2000, 120_000), 122);
        // An hour later: 1,800 fragments of 2 s were possible; twice that plus the margin.
        assert_eq!(max_index(0, 3_600_000, 2000, 120_000), 2 + 3600 + 120);
        // The chunk bomb: index 2³²−2 is out of reach for ~136 years.
        assert!(max_index(0, 3_600_000 * 24 * 365, 2000, 120_000) < u64::from(u32::MAX - 1));
        // A clock that went backwards is no licence.
        assert_eq!(max_index(10_000, 0, 2000, 0), 2);
    }

    #[test]
    fn the_byte_budget_counts_started_hours_plus_one() {
        let per_hour = 550 * 1000 / 8 * 3600 * 4;
        assert_eq!(byte_budget(0, 0, 550, 4), per_hour);
        assert_eq!(byte_budget(0, 1, 550, 4), 2 * per_hour);
        assert_eq!(byte_budget(0, 3_600_000, 550, 4), 2 * per_hour);
        assert_eq!(max_media_us(0, 1000, 0), 2_000_000);
    }
}
