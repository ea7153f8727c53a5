-- Each media fragment's activity, taken out of the chunk at ingest and sealed on its own
-- under a key derived from the stream key: the reviewer's strip reads these few hundred
-- bytes per fragment instead of opening every fragment (empty: none, or one refused;
-- NULL: stored before this, opened once when the strip is drawn).
ALTER TABLE chunks ADD COLUMN activity BYTEA;
