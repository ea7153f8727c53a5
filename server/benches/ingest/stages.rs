//! Where the time goes: the server's per-stage histograms (`proctor_ingest_stage_seconds`,
//! `proctor_group_commit_*`), read from its Prometheus registry before and after a run.

use std::collections::BTreeMap;

/// `name{labels}` → value, for the `_sum` and `_count` lines of the stage histograms.
#[derive(Default, Clone)]
pub struct Snapshot(BTreeMap<String, f64>);

pub fn snapshot() -> Snapshot {
    let text = server::metrics::handle().render();
    Snapshot(
        text.lines()
            .filter(|l| {
                l.starts_with("proctor_ingest_stage_seconds")
                    || l.starts_with("proctor_group_commit")
            })
            .filter_map(|l| {
                l.rsplit_once(' ')
                    .and_then(|(k, v)| Some((k.to_owned(), v.parse().ok()?)))
            })
            .collect(),
    )
}

impl Snapshot {
    fn mean_since(&self, before: &Snapshot, metric: &str, stage: &str) -> Option<(f64, f64)> {
        let get = |s: &Snapshot, part: &str| {
            s.0.get(&format!("{metric}_{part}{{stage=\"{stage}\"}}"))
                .copied()
                .unwrap_or(0.0)
        };
        let n = get(self, "count") - get(before, "count");
        (n > 0.0).then(|| ((get(self, "sum") - get(before, "sum")) / n, n))
    }

    /// One line: mean time per chunk in each stage, then per group-commit batch.
    pub fn summary_since(&self, before: &Snapshot) -> String {
        let mut parts = Vec::new();
        for stage in ["lookup", "verify", "blob_put", "durable"] {
            if let Some((mean, _)) = self.mean_since(before, "proctor_ingest_stage_seconds", stage)
            {
                parts.push(format!("{stage} {:.2} ms", mean * 1e3));
            }
        }
        for stage in ["blob_sync", "row_commit"] {
            if let (Some((secs, batches)), Some((chunks, _))) = (
                self.mean_since(before, "proctor_group_commit_seconds", stage),
                self.mean_since(before, "proctor_group_commit_chunks", stage),
            ) {
                parts.push(format!(
                    "{stage} {:.2} ms per batch of {chunks:.1} ({batches:.0} batches)",
                    secs * 1e3
                ));
            }
        }
        parts.join(" · ")
    }
}
