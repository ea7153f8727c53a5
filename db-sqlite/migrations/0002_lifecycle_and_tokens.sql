-- Attempt lifecycle, launch tokens that can be revoked and reissued, per-attempt quotas.
ALTER TABLE attempts ADD COLUMN state TEXT NOT NULL DEFAULT 'enrolled'
    CHECK (state IN ('enrolled', 'consented', 'recording', 'ended', 'in_review', 'reviewed', 'decided', 'destroyed', 'withdrawn'));
ALTER TABLE attempts ADD COLUMN state_changed_at INTEGER;
ALTER TABLE attempts ADD COLUMN ended_at INTEGER;
-- Generation of the current launch token (its secret is derived from the data key and it).
ALTER TABLE attempts ADD COLUMN token_generation INTEGER NOT NULL DEFAULT 0;
-- Sealed bytes stored for the attempt, kept in the chunk insert's transaction (quota).
ALTER TABLE attempts ADD COLUMN bytes_stored INTEGER NOT NULL DEFAULT 0;

UPDATE attempts SET state = 'consented', state_changed_at = consent_at WHERE consent_at IS NOT NULL;
UPDATE attempts SET state = 'recording' WHERE id IN (SELECT attempt_id FROM streams);
UPDATE attempts SET bytes_stored =
    (SELECT COALESCE(SUM(c.size), 0) FROM chunks c JOIN streams s ON s.id = c.stream_id WHERE s.attempt_id = attempts.id);

-- Every launch token ever issued. attempts.token_hash / token_expires_at keep the first
-- one, as issued before this migration; this table is the one that is read.
CREATE TABLE launch_tokens (
    token_hash BLOB PRIMARY KEY,
    attempt_id TEXT NOT NULL REFERENCES attempts(id),
    generation INTEGER NOT NULL,
    issued_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER,
    UNIQUE (attempt_id, generation)
);
INSERT INTO launch_tokens (token_hash, attempt_id, generation, issued_at, expires_at)
    SELECT token_hash, id, 0, created_at, token_expires_at FROM attempts;
