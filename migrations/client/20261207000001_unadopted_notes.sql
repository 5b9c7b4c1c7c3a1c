-- Notes written before notes were records (20261201000001_records.sql) that no pass
-- has adopted as records yet, listed once here: a sync pass then finds them in this
-- (almost always empty) table instead of comparing every note with its record, an
-- O(notes) scan on every pass. Every note written since has its record from the
-- start, so nothing else ever joins the list.
CREATE TABLE notes_unadopted (id TEXT PRIMARY KEY NOT NULL);
INSERT INTO notes_unadopted (id)
  SELECT n.id FROM notes n WHERE NOT EXISTS
    (SELECT 1 FROM records r WHERE r.user_id = n.user_id AND r.collection = 'notes' AND r.id = n.id);

-- The notes due a snapshot (records/compact.rs) by index, not by a scan of every
-- record on every pass.
CREATE INDEX records_due ON records(user_id, collection, changes_since_snapshot);
