-- Idle expiry of staff sessions: the last request seen (updated at most once a minute).
ALTER TABLE staff_sessions ADD COLUMN last_seen_at BIGINT NOT NULL DEFAULT 0;

-- One review per round of an attempt: round 1 is taken by the first assigned reviewer
-- who starts it, round 2 (a second review) is given to another reviewer.
CREATE TABLE reviews (
    id UUID PRIMARY KEY,
    attempt_id UUID NOT NULL REFERENCES attempts(id),
    round INTEGER NOT NULL CHECK (round IN (1, 2)),
    reviewer_id UUID NOT NULL REFERENCES staff(id),
    started_at BIGINT NOT NULL,
    submitted_at BIGINT,
    outcome TEXT CHECK (outcome IN ('no_irregularity', 'irregularities')),
    UNIQUE (attempt_id, round)
);

-- Irregularities flagged on the attempt's wall-clock timeline (unix ms). Editable while
-- their review is not submitted; the note is free text, purged with the recording.
CREATE TABLE flags (
    id UUID PRIMARY KEY,
    review_id UUID NOT NULL REFERENCES reviews(id),
    attempt_id UUID NOT NULL REFERENCES attempts(id),
    start_at BIGINT NOT NULL,
    end_at BIGINT NOT NULL,
    category TEXT NOT NULL,
    severity TEXT NOT NULL,
    note TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    CHECK (end_at >= start_at)
);
CREATE INDEX flags_by_attempt ON flags(attempt_id, start_at);
