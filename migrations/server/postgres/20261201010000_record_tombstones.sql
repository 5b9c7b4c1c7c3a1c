-- The tombstone prune (store_records.rs) looks for old tombstones: index only
-- those, so the periodic pass does not scan every change of every user.
CREATE INDEX record_changes_tombstones ON record_changes (created_at) WHERE deleted = TRUE;
