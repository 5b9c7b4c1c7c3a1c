-- SHA-256 (hex) of the device key a guest was registered with: the same device
-- asking again for the same id (its first answer was lost) gets a new session
-- instead of USER_ID_TAKEN. The key itself is never stored. NULL for guests
-- registered without a key (and for every user created before this column).
ALTER TABLE users ADD COLUMN device_key_hash TEXT;
