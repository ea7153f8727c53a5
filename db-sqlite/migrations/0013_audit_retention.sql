-- Audit retention: entries older than `[retention] audit_retention` leave the trail in
-- whole segments. Each retired segment keeps its signed statement (first and last entry,
-- the last one's chained hash), onto which the first kept entry chains; a segment is
-- never changed nor removed, and only entries a segment covers may be deleted.
CREATE TABLE audit_segments (
    up_to_seq INTEGER PRIMARY KEY,
    from_seq INTEGER NOT NULL,
    last_hash BLOB NOT NULL,
    signed TEXT NOT NULL
);
CREATE TRIGGER audit_segments_no_update BEFORE UPDATE ON audit_segments BEGIN SELECT RAISE(ABORT, 'audit segments are append-only'); END;
CREATE TRIGGER audit_segments_no_delete BEFORE DELETE ON audit_segments BEGIN SELECT RAISE(ABORT, 'audit segments are append-only'); END;
DROP TRIGGER audit_no_delete;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
    WHEN OLD.seq > (SELECT COALESCE(MAX(up_to_seq), 0) FROM audit_segments)
    BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;
