-- Short launch codes, for a candidate who types the code rather than clicking the
-- platform's link: the code's hash, its attempt, until when it works, when it was used
-- (once). Nothing personal.
CREATE TABLE launch_codes (
    code_hash BYTEA PRIMARY KEY,
    attempt_id UUID NOT NULL REFERENCES attempts(id),
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);
