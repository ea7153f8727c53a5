-- Background work (retention) claims an attempt for a while, so that several workers, or
-- several instances, never handle one attempt at once and a crashed worker's claim lapses.
ALTER TABLE attempts ADD COLUMN claimed_until INTEGER;
