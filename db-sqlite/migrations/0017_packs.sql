-- Issue 22: once a stream is complete, its fragments are copied into a few larger
-- write-once objects (packs) and their loose objects deleted: an hour of recording is a
-- handful of objects to purge instead of 1,800. A packed chunk's bytes are `size` bytes
-- from `pack_offset` in its stream's pack named by `pack_tag` (drawn by the packer that
-- won: two instances packing one stream never write one name) and `pack_first` (the
-- index the pack starts at); NULL: on their own, named by their hash. The row says it
-- all, so reading a chunk needs no other table.
ALTER TABLE chunks ADD COLUMN pack_tag INTEGER;
ALTER TABLE chunks ADD COLUMN pack_first INTEGER;
ALTER TABLE chunks ADD COLUMN pack_offset INTEGER;
-- When the stream's rows were pointed at its packs, and when its loose objects went
-- (a grace between the two lets a reader holding an older row finish).
ALTER TABLE streams ADD COLUMN packed_at INTEGER;
ALTER TABLE streams ADD COLUMN loose_deleted_at INTEGER;
CREATE INDEX streams_unpacked ON streams(opened_at) WHERE packed_at IS NULL;
CREATE INDEX streams_with_loose ON streams(packed_at) WHERE packed_at IS NOT NULL AND loose_deleted_at IS NULL;
