-- Liveness (issue 9): when the server last heard from an attempt's agent (a heartbeat or a
-- chunk, written at most every few seconds), and every silence longer than [liveness]
-- silent_after, kept as a gap on record (open while to_ms is NULL). Silences are deleted
-- with the attempt's other connection data when it is destroyed.
ALTER TABLE attempts ADD COLUMN last_heard_at INTEGER;
ALTER TABLE attempts ADD COLUMN silent_since INTEGER;
CREATE TABLE agent_silences (
    attempt_id TEXT NOT NULL REFERENCES attempts(id),
    from_ms INTEGER NOT NULL,
    to_ms INTEGER,
    PRIMARY KEY (attempt_id, from_ms)
);
CREATE INDEX attempts_heard ON attempts (last_heard_at) WHERE silent_since IS NULL AND state IN ('consented', 'recording');
