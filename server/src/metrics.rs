//! Prometheus metrics, served at `/metrics` on the staff listener. Labels name kinds of
//! things (a refusal's code, a store), never a person, an attempt or an address.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::Duration;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide recorder, installed on first use (several test servers in one process
/// share it).
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("proctor_ack_seconds".into()),
                &[
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ],
            )
            .expect("static buckets are valid")
            .install_recorder()
            .expect("one recorder per process")
    })
}

pub fn chunk_stored(bytes: usize, took: Duration, created: bool) {
    metrics::counter!("proctor_chunks_ingested_total", "outcome" => if created { "created" } else { "replayed" }).increment(1);
    if created {
        metrics::counter!("proctor_bytes_ingested_total").increment(bytes as u64);
    }
    metrics::histogram!("proctor_ack_seconds").record(took.as_secs_f64());
}

pub fn chunk_refused(code: &'static str) {
    metrics::counter!("proctor_chunks_refused_total", "reason" => code).increment(1);
}

/// What agents say is waiting to be uploaded (the fleet's backlog, no attempt named).
pub fn agent_backlog(bytes: u64) {
    metrics::histogram!("proctor_agent_backlog_bytes").record(bytes as f64);
}

pub fn stream_opened() {
    metrics::counter!("proctor_streams_opened_total").increment(1);
}

pub fn stream_ended() {
    metrics::counter!("proctor_streams_ended_total").increment(1);
}

/// A stream's fragments copied into packs (how many fragments, how many packs).
pub fn stream_packed(fragments: usize, packs: usize) {
    metrics::counter!("proctor_fragments_packed_total").increment(fragments as u64);
    metrics::counter!("proctor_packs_written_total").increment(packs as u64);
}

pub fn attempts_destroyed(n: u64) {
    metrics::counter!("proctor_attempts_destroyed_total").increment(n);
}

/// 1 while a destruction's overwritten pages still wait in SQLite's log (retried each sweep).
pub fn destroyed_pages_unflushed(pending: bool) {
    metrics::gauge!("proctor_destroyed_pages_unflushed").set(if pending { 1.0 } else { 0.0 });
}

/// Survivors of a spent key epoch whose re-wrap failed at the last sweep: each keeps its
/// epoch's KEK alive (retried each sweep).
pub fn rewrap_failed(count: u32) {
    metrics::gauge!("proctor_rewrap_failed").set(f64::from(count));
}

pub fn storage_error(store: &'static str) {
    metrics::counter!("proctor_storage_errors_total", "store" => store).increment(1);
}

/// Time one chunk spent in a stage of ingest (`lookup`, `verify`, `blob_put`, `durable`):
/// summed per stage, it says where an acknowledgement's time goes.
pub fn ingest_stage(stage: &'static str, took: Duration) {
    metrics::histogram!("proctor_ingest_stage_seconds", "stage" => stage)
        .record(took.as_secs_f64());
}

/// A fragment stored without its activity: one longer than the fragment, or malformed.
pub fn activity_dropped() {
    metrics::counter!("proctor_activity_dropped_total").increment(1);
}

/// One batch of the group commit: how many chunks, and how long its stage took.
pub fn group_stage(stage: &'static str, chunks: usize, took: Duration) {
    metrics::histogram!("proctor_group_commit_seconds", "stage" => stage)
        .record(took.as_secs_f64());
    metrics::histogram!("proctor_group_commit_chunks", "stage" => stage).record(chunks as f64);
}
