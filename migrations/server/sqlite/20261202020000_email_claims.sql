-- Email claims (issue 14, item 2). An unverified address on an account is a
-- claim: it holds the address for `emailClaimDays` (default 7) from this time,
-- after which the address is free again (a query-time rule, see
-- `store_claims.rs`). NULL on a verified address or on no address.
ALTER TABLE users ADD COLUMN email_claimed_at INTEGER;

-- Claims made before this migration run from now, not from their upgrade, so a
-- deploy never frees an address without the usual warning period.
UPDATE users SET email_claimed_at = CAST(strftime('%s', 'now') AS INTEGER) * 1000
    WHERE email IS NOT NULL AND email_verified = FALSE;
