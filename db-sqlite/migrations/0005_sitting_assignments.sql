-- Which staff member may see which sitting: reviewers their assigned sittings, jury
-- members the sittings of their jury. Nothing else is visible to them.
CREATE TABLE sitting_assignments (
    staff_id TEXT NOT NULL REFERENCES staff(id),
    sitting_id TEXT NOT NULL REFERENCES sittings(id),
    assigned_at INTEGER NOT NULL,
    PRIMARY KEY (staff_id, sitting_id)
);
