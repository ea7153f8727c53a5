-- SHA-256 of a stored chunk's whole bytes: its object's name (see migrations/sqlite/0003).
ALTER TABLE chunks ADD COLUMN content_sha256 BYTEA NOT NULL DEFAULT ''::bytea;
