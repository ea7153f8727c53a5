//! Checking the kept trail one page at a time: the chain from the anchor, dates that never
//! go back beyond the tolerance, and every checkpoint outside the database, with memory
//! bounded by a page (and the checkpoints' 40 bytes an entry), whatever the trail's length.
//! Reports the first bad entry (lowest sequence number) whichever check finds it.

use super::{AuditBroken, CLOCK_TOLERANCE_MS};
use crate::audit::segments::Anchor;
use crate::db::{verify_audit_chain_from, AuditEntry};
use std::collections::BTreeMap;

pub struct Walk {
    anchor: Anchor,
    checkpoints: BTreeMap<i64, [u8; 32]>,
    /// Entries seen so far; the next is expected at `anchor.up_to_seq + 1 + seen`.
    seen: i64,
    /// The chain checked so far ends here (`None` once it broke: the rest cannot chain).
    chain: Option<(i64, [u8; 32])>,
    latest_at: i64,
    head: i64,
    first: Option<AuditBroken>,
}

impl Walk {
    pub fn new(checkpoints: &[(i64, [u8; 32])], anchor: &Anchor) -> Self {
        let mut walk = Self {
            anchor: anchor.clone(),
            checkpoints: checkpoints
                .iter()
                .filter(|(seq, _)| *seq >= anchor.up_to_seq)
                .copied()
                .collect(),
            seen: 0,
            chain: Some((anchor.up_to_seq + 1, anchor.last_hash)),
            latest_at: i64::MIN,
            head: anchor.up_to_seq,
            first: None,
        };
        if walk
            .checkpoints
            .get(&anchor.up_to_seq)
            .is_some_and(|h| *h != anchor.last_hash)
        {
            walk.note(AuditBroken::Segment(
                anchor.up_to_seq,
                "its last hash is not the one checkpointed outside the database".into(),
            ));
        }
        walk
    }

    /// Keeps `problem` if it names an earlier entry than the one kept so far.
    fn note(&mut self, problem: AuditBroken) {
        let earlier = match (&self.first, problem.seq()) {
            (None, _) => true,
            (Some(kept), Some(p)) => kept.seq().is_none_or(|s| p < s),
            (Some(_), None) => false,
        };
        if earlier {
            self.first = Some(problem);
        }
    }

    /// The next entries of the trail, in order.
    pub fn page(&mut self, entries: &[AuditEntry]) {
        if let Some((next, prev)) = self.chain {
            self.chain = match verify_audit_chain_from(entries, next, prev) {
                Ok(()) => Some(entries.last().map_or((next, prev), |e| (e.seq + 1, e.hash))),
                Err(seq) => {
                    self.note(AuditBroken::Chain(seq));
                    None
                }
            };
        }
        for e in entries {
            if e.at_ms < self.latest_at.saturating_sub(CLOCK_TOLERANCE_MS) {
                self.note(AuditBroken::TimeReversed(e.seq));
            }
            self.latest_at = self.latest_at.max(e.at_ms);
            // Checkpoints are matched by place: the n-th kept entry must be the one the
            // checkpoint of seq `anchor + n` names.
            let expected = self.anchor.up_to_seq + 1 + self.seen;
            if let Some(hash) = self.checkpoints.get(&expected) {
                if e.seq != expected || e.hash != *hash {
                    self.note(AuditBroken::Rewritten(expected));
                }
            }
            self.seen += 1;
            self.head = e.seq;
        }
    }

    pub fn entries(&self) -> i64 {
        self.seen
    }

    pub fn finish(mut self) -> Result<(), AuditBroken> {
        if self.checkpoints.is_empty() && self.seen > 0 {
            return Err(AuditBroken::Checkpoints(
                "no checkpoint outside the database (wrong key directory, or the file was removed)"
                    .into(),
            ));
        }
        let beyond = self.anchor.up_to_seq + self.seen;
        let unmatched: Vec<i64> = self
            .checkpoints
            .range(beyond + 1..)
            .map(|(s, _)| *s)
            .collect();
        for seq in unmatched {
            let head = self.head;
            self.note(if seq > head {
                AuditBroken::Missing(head + 1)
            } else {
                AuditBroken::Missing(seq)
            });
        }
        self.first.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::trail;
    use super::super::verify_from;
    use super::*;

    /// Fed in pages of any size, the walk says what one pass over the whole trail says.
    #[test]
    fn pages_of_any_size_find_the_same_first_bad_entry() {
        let t = trail(23);
        let cps: Vec<_> = t.iter().map(|e| (e.seq, e.hash)).collect();
        let mut edited = t.clone();
        edited[17].actor = "b".into();
        let mut removed = t.clone();
        removed.remove(9);
        let cases = [
            (t.clone(), cps.clone()),
            (edited, cps.clone()),
            (removed, cps.clone()),
            (t[..20].to_vec(), cps.clone()),
            (t.clone(), Vec::new()),
        ];
        for (trail, cps) in cases {
            let whole = verify_from(&trail, &cps, &Anchor::START);
            for size in [1, 2, 5, 22, 100] {
                let mut walk = Walk::new(&cps, &Anchor::START);
                for page in trail.chunks(size) {
                    walk.page(page);
                }
                assert_eq!(walk.entries(), trail.len() as i64);
                assert_eq!(walk.finish(), whole, "pages of {size}");
            }
        }
        let mut edited = t.clone();
        edited[17].actor = "b".into();
        assert_eq!(
            verify_from(&edited, &cps, &Anchor::START),
            Err(AuditBroken::Chain(18))
        );
    }
}
