-- Audit retention: entries older than `[retention] audit_retention` leave the trail in
-- whole segments. Each retired segment keeps its signed statement (first and last entry,
-- the last one's chained hash), onto which the first kept entry chains; a segment is
-- never changed nor removed, and only entries a segment covers may be deleted.
CREATE TABLE audit_segments (
    up_to_seq BIGINT PRIMARY KEY,
    from_seq BIGINT NOT NULL,
    last_hash BYTEA NOT NULL,
    signed TEXT NOT NULL
);
CREATE FUNCTION audit_segments_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit segments are append-only';
END $$;
CREATE TRIGGER audit_segments_no_change BEFORE UPDATE OR DELETE ON audit_segments FOR EACH ROW EXECUTE FUNCTION audit_segments_append_only();
CREATE TRIGGER audit_segments_no_truncate BEFORE TRUNCATE ON audit_segments FOR EACH STATEMENT EXECUTE FUNCTION audit_segments_append_only();
CREATE OR REPLACE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND OLD.seq <= (SELECT COALESCE(MAX(up_to_seq), 0) FROM audit_segments) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit is append-only';
END $$;
