-- PostgreSQL schema: the same tables as migrations/sqlite (0001 + 0002), in native types.
-- Times are unix milliseconds (UTC).
CREATE TABLE sittings (
    id UUID PRIMARY KEY,
    ref TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

CREATE TABLE attempts (
    id UUID PRIMARY KEY,
    sitting_id UUID NOT NULL REFERENCES sittings(id),
    ref TEXT NOT NULL,
    kek_epoch TEXT NOT NULL,
    wrapped_dek BYTEA NOT NULL,
    dek_fingerprint TEXT NOT NULL,
    consent_notice TEXT,
    consent_at BIGINT,
    created_at BIGINT NOT NULL,
    state TEXT NOT NULL DEFAULT 'enrolled'
        CHECK (state IN ('enrolled', 'consented', 'recording', 'ended', 'in_review', 'reviewed', 'decided', 'destroyed', 'withdrawn')),
    state_changed_at BIGINT,
    ended_at BIGINT,
    token_generation INTEGER NOT NULL DEFAULT 0,
    bytes_stored BIGINT NOT NULL DEFAULT 0,
    UNIQUE (sitting_id, ref)
);

CREATE TABLE launch_tokens (
    token_hash BYTEA PRIMARY KEY,
    attempt_id UUID NOT NULL REFERENCES attempts(id),
    generation INTEGER NOT NULL,
    issued_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT,
    UNIQUE (attempt_id, generation)
);

-- One row per agent run. Connection data lives here, under the recording's retention.
CREATE TABLE streams (
    id UUID PRIMARY KEY,
    attempt_id UUID NOT NULL REFERENCES attempts(id),
    salt BYTEA NOT NULL,
    opened_at BIGINT NOT NULL,
    ended_at BIGINT,
    final_index BIGINT,
    client_ip TEXT NOT NULL,
    agent_version TEXT NOT NULL,
    os TEXT NOT NULL
);
CREATE INDEX streams_by_attempt ON streams(attempt_id, opened_at);

CREATE TABLE chunks (
    stream_id UUID NOT NULL REFERENCES streams(id),
    idx BIGINT NOT NULL,
    digest BYTEA NOT NULL,
    prev_digest BYTEA NOT NULL,
    size BIGINT NOT NULL,
    media_start_us BIGINT NOT NULL,
    media_end_us BIGINT NOT NULL,
    last BOOLEAN NOT NULL,
    stored_at BIGINT NOT NULL,
    PRIMARY KEY (stream_id, idx)
);

CREATE TABLE staff (
    id UUID PRIMARY KEY,
    login TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL CHECK (role IN ('reviewer', 'jury', 'admin')),
    password_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE staff_sessions (
    token_hash BYTEA PRIMARY KEY,
    staff_id UUID NOT NULL REFERENCES staff(id),
    expires_at BIGINT NOT NULL
);

-- Append-only, hash-chained: each row's hash covers the previous row's hash.
CREATE TABLE audit (
    seq BIGINT PRIMARY KEY,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    attempt_id UUID,
    detail TEXT NOT NULL,
    prev_hash BYTEA NOT NULL,
    hash BYTEA NOT NULL
);
CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit is append-only';
END
$$;
CREATE TRIGGER audit_no_change BEFORE UPDATE OR DELETE ON audit FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
