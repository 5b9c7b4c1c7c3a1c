-- Compaction (DESIGN.md §3a): how many changes a record took in since its last
-- snapshot was pushed; past a threshold the device pushes the whole document with
-- `compacts` = its pull cursor, and the server drops the log it replaces.
ALTER TABLE records ADD COLUMN changes_since_snapshot INTEGER NOT NULL DEFAULT 0;
ALTER TABLE record_outbox ADD COLUMN compacts TEXT;

-- When the profile (get-session) was last read: an idle pass skips it while this is
-- recent, and the records pull alone proves the session (one request).
ALTER TABLE remote_account ADD COLUMN profile_checked_at TEXT;
