-- Changes this device pushed and the server acknowledged, by SHA-256, with the
-- record each belongs to, until its own pull brings them back: folding one in again
-- would load and save its note's whole document for nothing, since the document
-- already holds it. Emptied after every complete pull (whatever it did not bring
-- back, the server no longer has as such: a snapshot replaced it).
CREATE TABLE record_echo (
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    hash       TEXT NOT NULL,
    collection TEXT NOT NULL,
    id         TEXT NOT NULL,
    PRIMARY KEY (user_id, hash)
) WITHOUT ROWID;
