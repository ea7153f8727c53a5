-- PostgreSQL: the same as migrations/sqlite/0008_retention.sql, in native types.
-- The jury's decision on a sitting's minutes (PV): one per sitting, irreversible.
-- `override_unsubmitted`: the jury said explicitly that it decides while reviews of the
-- sitting were not submitted.
CREATE TABLE pv_decisions (
    sitting_id UUID PRIMARY KEY REFERENCES sittings(id),
    outcome TEXT NOT NULL CHECK (outcome IN ('validated', 'reservations', 'refused')),
    decided_at BIGINT NOT NULL,
    decided_by TEXT NOT NULL,
    override_unsubmitted BOOLEAN NOT NULL DEFAULT FALSE
);

-- Retention facts of an attempt (server/src/retention/policy.rs reads them).
-- Named as contested by a PV validated with reservations.
ALTER TABLE attempts ADD COLUMN contested BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE attempts ADD COLUMN erasure_requested_at BIGINT;
-- A legal hold: while hold_reason is set, nothing of the attempt is modified or deleted.
ALTER TABLE attempts ADD COLUMN hold_reason TEXT;
ALTER TABLE attempts ADD COLUMN hold_lifted_at BIGINT;
-- When the attempt is to be destroyed, once a decision, an erasure or a lifted hold has
-- fixed it; NULL: the ceiling counted from the end (the sweep computes it).
ALTER TABLE attempts ADD COLUMN due_at BIGINT;
ALTER TABLE attempts ADD COLUMN destroyed_at BIGINT;
-- The signed destruction receipt (JSON): kept, it holds no personal data.
ALTER TABLE attempts ADD COLUMN receipt TEXT;
-- Set once every blob of a destroyed attempt is deleted (destruction resumes until then).
ALTER TABLE attempts ADD COLUMN blobs_purged_at BIGINT;
CREATE INDEX attempts_due ON attempts (due_at) WHERE destroyed_at IS NULL;
CREATE INDEX attempts_unpurged ON attempts (destroyed_at) WHERE blobs_purged_at IS NULL;

-- Connection data (address, agent version, OS) sealed under the attempt's data key, so
-- that no copy of the database keeps it past the key. The clear columns stay empty.
ALTER TABLE streams ADD COLUMN connection BYTEA;

-- The access report reads one attempt's entries of the audit trail, not the whole trail.
CREATE INDEX audit_by_attempt ON audit (attempt_id, seq);
