-- Issue 22: a chunk's bytes are added to its attempt's `bytes_stored` by the statement
-- that inserts its row, so that a group commit's batch is one statement (one round trip
-- to SQLite's thread, one implicit transaction) instead of BEGIN, INSERT, UPDATE and
-- COMMIT, each a hand-off between threads that cost more than the work on a loaded
-- machine. The trigger runs inside the inserting statement: the row and the count are
-- committed together or not at all, as before. Only rows actually inserted fire it
-- (`ON CONFLICT DO NOTHING` skips the others).
CREATE TRIGGER chunks_charge_attempt AFTER INSERT ON chunks
BEGIN
    UPDATE attempts SET bytes_stored = bytes_stored + NEW.size
    WHERE id = (SELECT attempt_id FROM streams WHERE id = NEW.stream_id);
END;
