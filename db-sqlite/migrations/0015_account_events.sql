-- What admins did to a staff account, for its owner to read at their next login, and the
-- password resets waiting for a second admin (requested, not done yet).
CREATE TABLE account_events (
    id TEXT PRIMARY KEY,
    staff_id TEXT NOT NULL REFERENCES staff(id),
    action TEXT NOT NULL CHECK (action IN ('password_reset', 'totp_removed')),
    requested_by TEXT NOT NULL,
    requested_at INTEGER NOT NULL,
    approved_by TEXT,
    done_at INTEGER,
    seen_at INTEGER
);
CREATE INDEX account_events_by_staff ON account_events (staff_id, done_at);
