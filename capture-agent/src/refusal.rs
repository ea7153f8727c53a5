//! What the agent does with each way a call can fail. Every answer gets a decision, so no
//! chunk sits in the spool forever without anybody being told:
//!
//! - **retry** (network down, 5xx, 408, busy or rate-limited, index ahead of the stream's
//!   age): wait, honouring `Retry-After`, with exponential backoff and jitter, for as long
//!   as it takes;
//! - **drop** (this chunk can never be accepted: the server holds another one at its
//!   index, it is corrupt, too large, past the stream's end): remove it from the spool and
//!   log why, in the candidate's terminal and in the spool's `dropped.log`;
//! - **reopen** (the server no longer knows the stream, or cannot open it): its chunks are
//!   dropped, and the live capture goes on in a new stream the agent keys itself;
//! - **stop** (the token is unknown, consent is missing or withdrawn, the attempt ended or
//!   was destroyed, a redirect, an untrusted certificate): stop capturing and tell the
//!   candidate in plain words.

use crate::client::{Failure, Outcome};
use backon::{ExponentialBuilder, Retryable};
use rand::Rng;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Retry,
    Drop(DropReason),
    Reopen,
    Stop(StopReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    ConflictingChunk,
    StreamEnded,
    Corrupt,
    TooLarge,
    QuotaReached,
    Refused,
    /// Neither the spool (disk full) nor the memory bound had room for it.
    SpoolFull,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    TokenRefused,
    ConsentMissing,
    AttemptClosed,
    RecordingDestroyed,
    Redirected,
    UntrustedCertificate,
    TooManyStreams,
}

pub fn decide(f: &Failure) -> Decision {
    use Decision::*;
    match (f.status, f.code.as_str()) {
        (0, "untrusted_certificate") => Stop(StopReason::UntrustedCertificate),
        (0, _) => Retry,
        (300..=399, _) => Stop(StopReason::Redirected),
        (401, _) => Stop(StopReason::TokenRefused),
        (403, "consent_required") => Stop(StopReason::ConsentMissing),
        // Only the server's own "not found" means the stream is gone; a proxy's 404 (a
        // rolling deploy) is worth waiting out.
        (404, "not_found") => Reopen,
        (404, _) => Retry,
        (408, _) => Retry,
        (409, "conflicting_chunk") => Drop(DropReason::ConflictingChunk),
        // Chunks of a stream go in order: its first chunk was stored and forgotten since,
        // or never will be.
        (409, "stream_not_opened") => Reopen,
        (409, "stream_ended") => Drop(DropReason::StreamEnded),
        (409, "attempt_ended" | "invalid_transition" | "recording_closed") => {
            Stop(StopReason::AttemptClosed)
        }
        (410, _) => Stop(StopReason::RecordingDestroyed),
        (413, _) => Drop(DropReason::TooLarge),
        (422, "index_out_of_window" | "media_time_out_of_window") => Retry,
        (422, _) => Drop(DropReason::Corrupt),
        (429, "stream_quota_exceeded") => Stop(StopReason::TooManyStreams),
        (429, "chunk_quota_exceeded") => Drop(DropReason::QuotaReached),
        (429, _) => Retry,
        (500..=599, _) => Retry,
        _ => Drop(DropReason::Refused),
    }
}

/// Exponential backoff from 200 ms to 8 s with jitter; a `Retry-After` replaces the
/// computed delay (plus up to a quarter of it at random, so that agents told the same
/// thing do not come back in step).
fn backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(8))
        .with_jitter()
        .without_max_times()
}

fn jittered(d: Duration) -> Duration {
    d + d.mul_f64(rand::thread_rng().gen_range(0.0..0.25))
}

/// Runs `call` until it succeeds or fails with anything but `Retry`; `on_retry` hears of
/// each wait.
pub async fn retrying<T, F, Fut>(
    mut call: F,
    mut on_retry: impl FnMut(&Failure, Duration),
) -> Result<T, (Failure, Decision)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Outcome<T>>,
{
    (|| call())
        .retry(backoff())
        .when(|f: &Failure| decide(f) == Decision::Retry)
        .adjust(|f: &Failure, d| f.retry_after.map(jittered).or(d))
        .notify(|f: &Failure, d| on_retry(f, d))
        .await
        .map_err(|f| {
            let d = decide(&f);
            (f, d)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(status: u16, code: &str) -> Failure {
        Failure {
            status,
            code: code.into(),
            message: String::new(),
            retry_after: None,
        }
    }

    #[test]
    fn every_answer_gets_a_decision() {
        use Decision::*;
        let table = [
            (f(0, "network"), Retry),
            (
                f(0, "untrusted_certificate"),
                Stop(StopReason::UntrustedCertificate),
            ),
            (f(307, "http_307"), Stop(StopReason::Redirected)),
            (f(400, "malformed_chunk"), Drop(DropReason::Refused)),
            (f(401, "unauthorized"), Stop(StopReason::TokenRefused)),
            (f(401, "token_revoked"), Stop(StopReason::TokenRefused)),
            (f(403, "consent_required"), Stop(StopReason::ConsentMissing)),
            (f(403, "forbidden"), Drop(DropReason::Refused)),
            (f(404, "not_found"), Reopen),
            (f(404, "http_404"), Retry),
            (f(408, "body_timeout"), Retry),
            (
                f(409, "conflicting_chunk"),
                Drop(DropReason::ConflictingChunk),
            ),
            (f(409, "stream_ended"), Drop(DropReason::StreamEnded)),
            (f(409, "stream_not_opened"), Reopen),
            (f(409, "attempt_ended"), Stop(StopReason::AttemptClosed)),
            (
                f(409, "invalid_transition"),
                Stop(StopReason::AttemptClosed),
            ),
            (f(409, "recording_closed"), Stop(StopReason::AttemptClosed)),
            (f(409, "conflict"), Drop(DropReason::Refused)),
            (f(410, "gone"), Stop(StopReason::RecordingDestroyed)),
            (f(411, "length_required"), Drop(DropReason::Refused)),
            (f(413, "too_large"), Drop(DropReason::TooLarge)),
            (f(422, "authentication_failed"), Drop(DropReason::Corrupt)),
            (f(422, "index_out_of_window"), Retry),
            (f(429, "too_many_uploads"), Retry),
            (f(429, "byte_quota_exceeded"), Retry),
            (
                f(429, "stream_quota_exceeded"),
                Stop(StopReason::TooManyStreams),
            ),
            (
                f(429, "chunk_quota_exceeded"),
                Drop(DropReason::QuotaReached),
            ),
            (f(500, "internal"), Retry),
            (f(503, "overloaded"), Retry),
            (f(507, "storage_full"), Retry),
        ];
        for (failure, expected) in table {
            assert_eq!(decide(&failure), expected, "{failure}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_is_honoured_then_a_refusal_ends_the_loop() {
        let mut calls = 0;
        let mut waits = Vec::new();
        let started = tokio::time::Instant::now();
        let out: Result<(), _> = retrying(
            || {
                calls += 1;
                let n = calls;
                async move {
                    match n {
                        1 => Err(Failure {
                            retry_after: Some(Duration::from_secs(5)),
                            ..f(503, "overloaded")
                        }),
                        2 => Err(f(0, "network")),
                        _ => Err(f(409, "conflicting_chunk")),
                    }
                }
            },
            |_, d| waits.push(d),
        )
        .await;
        assert_eq!(
            out.unwrap_err().1,
            Decision::Drop(DropReason::ConflictingChunk)
        );
        assert_eq!(calls, 3);
        assert!(
            waits[0] >= Duration::from_secs(5) && waits[0] <= Duration::from_millis(6250),
            "{waits:?}"
        );
        assert!(waits[1] < Duration::from_secs(1), "{waits:?}");
        assert!(started.elapsed() >= Duration::from_secs(5));
    }
}
