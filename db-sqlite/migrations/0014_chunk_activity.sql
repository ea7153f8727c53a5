-- Each media fragment's activity, taken out of the chunk at ingest and sealed on its own
-- under a key derived from the stream key: the reviewer's strip reads these few hundred
-- bytes per fragment instead of opening every fragment (NULL: none, or one refused).
ALTER TABLE chunks ADD COLUMN activity BLOB;
