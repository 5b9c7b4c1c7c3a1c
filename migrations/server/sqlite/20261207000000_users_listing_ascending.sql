-- users_listing was (created_at DESC, id DESC), so every new user went in at the
-- index's left edge. SQLite's quick balance serves appends at the right edge only;
-- at the left edge each full page is split among its siblings, and a sign-in
-- batch wrote 3.5 pages of this index on average (1.3 for the ascending indexes
-- beside it). SQLite walks an index either way, so the listing (newest first,
-- and oldest first when paging back) reads this one as it read the other.
DROP INDEX users_listing;
CREATE INDEX users_listing ON users (created_at, id);
