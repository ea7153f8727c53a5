//! A group commit's batch of chunk rows, as every backend writes it: one multi-row insert
//! in one order, then each chunk's outcome from what that insert created and what the
//! table held for the rest.

use crate::records::{DecodeError, IdColumn};
use crate::{AttemptId, ChunkInsert, NewChunk, StreamId};
use std::collections::{BTreeMap, HashMap, HashSet};

/// A row's key: its stream and index.
pub type ChunkKey = (StreamId, u32);

/// A key as a backend's row returns it (`stream_id`, `idx`).
pub fn chunk_key(stream: impl IdColumn, idx: i64) -> Result<ChunkKey, DecodeError> {
    let index = u32::try_from(idx).map_err(|e| DecodeError::new("idx", e.to_string()))?;
    Ok((stream.into_id("stream_id")?, index))
}

/// The order a batch's rows are written (and so locked) in: by stream and index, then by
/// place in the batch. The same on every instance, so that two instances' batches wait
/// for each other instead of deadlocking.
pub fn insert_order(batch: &[NewChunk]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..batch.len()).collect();
    order.sort_by_key(|&i| (batch[i].row.stream_id, batch[i].row.index, i));
    order
}

/// What each chunk became (in the batch's own order), and the bytes each attempt gained.
/// `inserted`: the keys the insert created; `stored`: the digest the table holds for the
/// others. Two copies of one index in a batch: the first in `order` is the one inserted,
/// the second a duplicate of it or a conflict with it.
pub fn outcomes(
    batch: &[NewChunk],
    order: &[usize],
    inserted: &HashSet<ChunkKey>,
    stored: &HashMap<ChunkKey, Vec<u8>>,
) -> (Vec<ChunkInsert>, BTreeMap<AttemptId, u64>) {
    let mut outcomes = vec![ChunkInsert::Conflict; batch.len()];
    let mut created: HashMap<ChunkKey, &[u8]> = HashMap::new();
    let mut added: BTreeMap<AttemptId, u64> = BTreeMap::new();
    for &i in order {
        let row = &batch[i].row;
        let key = (row.stream_id, row.index);
        outcomes[i] = if inserted.contains(&key) && !created.contains_key(&key) {
            created.insert(key, &row.digest);
            *added.entry(batch[i].attempt).or_default() += row.size;
            ChunkInsert::Created
        } else {
            let holds = created
                .get(&key)
                .copied()
                .or_else(|| stored.get(&key).map(Vec::as_slice));
            if holds == Some(&row.digest[..]) {
                ChunkInsert::Duplicate
            } else {
                ChunkInsert::Conflict
            }
        };
    }
    (outcomes, added)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ChunkRow, Transport};

    fn chunk(attempt: AttemptId, stream: StreamId, index: u32, digest: u8) -> NewChunk {
        NewChunk {
            attempt,
            row: ChunkRow {
                stream_id: stream,
                index,
                digest: [digest; 32],
                content_sha256: [digest; 32],
                prev_digest: [0; 32],
                size: 10,
                media_start_us: 0,
                media_end_us: 1,
                last: false,
                pack: None,
            },
            transport: Transport::Https,
            activity: None,
        }
    }

    #[test]
    fn copies_within_a_batch_and_rows_already_there() {
        let (a, s) = (AttemptId::random(), StreamId::random());
        let batch = vec![
            chunk(a, s, 2, 1), // created
            chunk(a, s, 1, 5), // the table holds 5 at index 1: a duplicate
            chunk(a, s, 2, 1), // the same as the first: a duplicate of it
            chunk(a, s, 2, 9), // other bytes at the first's index: a conflict
            chunk(a, s, 3, 7), // the table holds other bytes: a conflict
        ];
        let order = insert_order(&batch);
        assert_eq!(order, vec![1, 0, 2, 3, 4]);
        let inserted = HashSet::from([(s, 2)]);
        let stored = HashMap::from([((s, 1), vec![5; 32]), ((s, 3), vec![8; 32])]);
        let (out, added) = outcomes(&batch, &order, &inserted, &stored);
        use ChunkInsert::*;
        assert_eq!(out, vec![Created, Duplicate, Duplicate, Conflict, Conflict]);
        assert_eq!(added, BTreeMap::from([(a, 10)]));
    }
}
