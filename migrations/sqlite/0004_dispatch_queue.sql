-- Messages waiting for dispatch, one row each, in lanes of channel and message type so a
-- marketing flood never queues ahead of auth codes. Rows come from the `dispatch-queue`
-- subscription (accepted messages) and from workers (retries, deferrals); a worker claims due
-- rows for a lease and removes a row with the outcome it appends.
CREATE TABLE dispatch_queue (
    message_id    TEXT    PRIMARY KEY,
    tenant_id     TEXT    NOT NULL,
    lane          TEXT    NOT NULL,
    -- Milliseconds since the Unix epoch.
    due_at        INTEGER NOT NULL,
    claimed_by    TEXT,
    claimed_until INTEGER
);

CREATE INDEX dispatch_queue_due ON dispatch_queue (lane, due_at);
