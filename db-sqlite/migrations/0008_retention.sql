-- The jury's decision on a sitting's minutes (PV): one per sitting, irreversible.
-- `override_unsubmitted`: the jury said explicitly that it decides while reviews of the
-- sitting were not submitted.
CREATE TABLE pv_decisions (
    sitting_id TEXT PRIMARY KEY REFERENCES sittings(id),
    outcome TEXT NOT NULL CHECK (outcome IN ('validated', 'reservations', 'refused')),
    decided_at INTEGER NOT NULL,
    decided_by TEXT NOT NULL,
    override_unsubmitted INTEGER NOT NULL DEFAULT 0
);

-- Retention facts of an attempt (server/src/retention/policy.rs reads them).
-- Named as contested by a PV validated with reservations.
ALTER TABLE attempts ADD COLUMN contested INTEGER NOT NULL DEFAULT 0;
ALTER TABLE attempts ADD COLUMN erasure_requested_at INTEGER;
-- A legal hold: while hold_reason is set, nothing of the attempt is modified or deleted.
ALTER TABLE attempts ADD COLUMN hold_reason TEXT;
ALTER TABLE attempts ADD COLUMN hold_lifted_at INTEGER;
-- When the attempt is to be destroyed, once a decision, an erasure or a lifted hold has
-- fixed it; NULL: the ceiling counted from the end (the sweep computes it).
ALTER TABLE attempts ADD COLUMN due_at INTEGER;
ALTER TABLE attempts ADD COLUMN destroyed_at INTEGER;
-- The signed destruction receipt (JSON): kept, it holds no personal data.
ALTER TABLE attempts ADD COLUMN receipt TEXT;
-- Set once every blob of a destroyed attempt is deleted (destruction resumes until then).
ALTER TABLE attempts ADD COLUMN blobs_purged_at INTEGER;
CREATE INDEX attempts_due ON attempts (due_at) WHERE destroyed_at IS NULL;
CREATE INDEX attempts_unpurged ON attempts (destroyed_at) WHERE blobs_purged_at IS NULL;

-- Connection data (address, agent version, OS) sealed under the attempt's data key, so
-- that no copy of the database keeps it past the key. The clear columns stay empty.
ALTER TABLE streams ADD COLUMN connection BLOB;

-- The access report reads one attempt's entries of the audit trail, not the whole trail.
CREATE INDEX audit_by_attempt ON audit (attempt_id, seq);
