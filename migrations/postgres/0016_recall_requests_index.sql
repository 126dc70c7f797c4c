-- Recall requests in log order, for the dispatch role's recall subscription: it reads only
-- `RecallRequested`, a rare event, and walking the whole log-order index to find them cost a
-- fresh dispatch role about a second of Postgres time per million events (`herald bench`, in
-- its dispatch phase). A partial index holds only those rows, so the walk is over recalls
-- alone; appends of other events only test the predicate. The store's log read names the
-- same predicate in its SQL (`INDEXED_EVENT_TYPES` in crates/store/src/postgres.rs), which is
-- what lets Postgres use this index.
CREATE INDEX events_recall_requests ON events (transaction_id, global_position)
    WHERE event_type = 'RecallRequested';
