-- The timeline's index for alerts holds only the rows they count. Alerts (`failure_ratio` in
-- crates/herald/src/alerts.rs, its only reader) count the dispatches and failures recorded in a
-- recent window; every other kind (acceptances first of all, one per message) was kept in the
-- index for nothing, paid on every event the trace projection applies and in every replay's
-- index build. The alerts query names the same predicate, which is what lets Postgres use it.
-- SQLite keeps its index on (kind, at).
DROP INDEX IF EXISTS message_timeline_kind_at;
CREATE INDEX message_timeline_outcomes ON message_timeline (at)
    WHERE kind IN ('DISPATCHED', 'FAILED');
