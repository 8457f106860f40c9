-- No planner statistics of content.  ANALYZE (and autovacuum's automatic
-- ANALYZE) copies sample values of each column into pg_statistic: its
-- most-common values and histogram bounds of a bytea column are whole values
-- taken from the table, so the statistics of deliveries.wrap held wraps, and
-- those of messages.envelope ciphertext, which stayed there after the rows
-- were recalled and rewritten away.  A statistics target of 0 makes ANALYZE
-- skip the column for good.  Setting the target does not remove statistics
-- already gathered; changing the column's type to the type it already has
-- does (PostgreSQL drops a column's statistics when its type is altered) and,
-- the type being the same, rewrites nothing.

ALTER TABLE messages ALTER COLUMN envelope SET STATISTICS 0;
ALTER TABLE messages ALTER COLUMN envelope TYPE bytea;
ALTER TABLE deliveries ALTER COLUMN wrap SET STATISTICS 0;
ALTER TABLE deliveries ALTER COLUMN wrap TYPE bytea;
ALTER TABLE events ALTER COLUMN payload SET STATISTICS 0;
ALTER TABLE events ALTER COLUMN payload TYPE bytea;
ALTER TABLE links ALTER COLUMN request SET STATISTICS 0;
ALTER TABLE links ALTER COLUMN request TYPE bytea;
ALTER TABLE links ALTER COLUMN answer SET STATISTICS 0;
ALTER TABLE links ALTER COLUMN answer TYPE bytea;
ALTER TABLE sessions ALTER COLUMN token_hash SET STATISTICS 0;
ALTER TABLE sessions ALTER COLUMN token_hash TYPE bytea;
