-- Staff account hygiene: disabling, forced password change (first login, after a reset),
-- password age, TOTP second factor (secret sealed by the server's key store; the last
-- time step used, so that a code is never accepted twice).
ALTER TABLE staff ADD COLUMN disabled_at BIGINT;
ALTER TABLE staff ADD COLUMN must_change_password BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE staff ADD COLUMN password_changed_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE staff ADD COLUMN totp_secret BYTEA;
ALTER TABLE staff ADD COLUMN totp_last_step BIGINT;
UPDATE staff SET password_changed_at = created_at;

-- Server-wide switches an admin sets (e.g. TOTP required for every staff account).
CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
