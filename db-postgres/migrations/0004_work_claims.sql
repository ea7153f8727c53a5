-- Background work (retention) claims an attempt for a while (see migrations/sqlite/0004).
ALTER TABLE attempts ADD COLUMN claimed_until BIGINT;
CREATE INDEX attempts_ended ON attempts (ended_at) WHERE state <> 'destroyed';
