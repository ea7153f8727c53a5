-- Foundation schema. Times are unix milliseconds (UTC).
CREATE TABLE sittings (
    id TEXT PRIMARY KEY,
    ref TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);

CREATE TABLE attempts (
    id TEXT PRIMARY KEY,
    sitting_id TEXT NOT NULL REFERENCES sittings(id),
    ref TEXT NOT NULL,
    token_hash BLOB NOT NULL UNIQUE,
    token_expires_at INTEGER NOT NULL,
    kek_epoch TEXT NOT NULL,
    wrapped_dek BLOB NOT NULL,
    dek_fingerprint TEXT NOT NULL,
    consent_notice TEXT,
    consent_at INTEGER,
    created_at INTEGER NOT NULL,
    UNIQUE (sitting_id, ref)
);

-- One row per agent run. Connection data lives here, under the recording's retention.
CREATE TABLE streams (
    id TEXT PRIMARY KEY,
    attempt_id TEXT NOT NULL REFERENCES attempts(id),
    salt BLOB NOT NULL,
    opened_at INTEGER NOT NULL,
    ended_at INTEGER,
    final_index INTEGER,
    client_ip TEXT NOT NULL,
    agent_version TEXT NOT NULL,
    os TEXT NOT NULL
);
CREATE INDEX streams_by_attempt ON streams(attempt_id, opened_at);

CREATE TABLE chunks (
    stream_id TEXT NOT NULL REFERENCES streams(id),
    idx INTEGER NOT NULL,
    digest BLOB NOT NULL,
    prev_digest BLOB NOT NULL,
    size INTEGER NOT NULL,
    media_start_us INTEGER NOT NULL,
    media_end_us INTEGER NOT NULL,
    last INTEGER NOT NULL,
    stored_at INTEGER NOT NULL,
    PRIMARY KEY (stream_id, idx)
);

CREATE TABLE staff (
    id TEXT PRIMARY KEY,
    login TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL CHECK (role IN ('reviewer', 'jury', 'admin')),
    password_hash TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE staff_sessions (
    token_hash BLOB PRIMARY KEY,
    staff_id TEXT NOT NULL REFERENCES staff(id),
    expires_at INTEGER NOT NULL
);

-- Append-only, hash-chained: each row's hash covers the previous row's hash.
CREATE TABLE audit (
    seq INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    attempt_id TEXT,
    detail TEXT NOT NULL,
    prev_hash BLOB NOT NULL,
    hash BLOB NOT NULL
);
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;
