-- SHA-256 of a stored chunk's whole bytes: its object's name. The chain digest covers only
-- header and tag, which a candidate holding the stream key could make collide; object
-- stores without conditional writes then need names that differ whenever the bytes do.
ALTER TABLE chunks ADD COLUMN content_sha256 BLOB NOT NULL DEFAULT x'';
