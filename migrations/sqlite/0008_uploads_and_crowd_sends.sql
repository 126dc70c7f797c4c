-- Files uploaded to /uploads: the audiences of crowd sends. A file is kept in chunks, so it is
-- written and read a piece at a time and never held whole; the uploads row is written last, so
-- a file without one is an upload that never finished.
CREATE TABLE uploads (
    id         TEXT    PRIMARY KEY,
    tenant_id  TEXT    NOT NULL,
    filename   TEXT    NOT NULL,
    bytes      INTEGER  NOT NULL,
    lines      INTEGER  NOT NULL,
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE upload_chunks (
    upload_id  TEXT    NOT NULL,
    seq        INTEGER  NOT NULL,
    -- The byte offset of the chunk's first byte in the file.
    start      INTEGER  NOT NULL,
    data       BLOB   NOT NULL,
    PRIMARY KEY (upload_id, seq)
);

-- Crowd sends waiting for their next run, or running: claimed for a lease by one runner at a
-- time, like the dispatch queue, so a runner that dies leaves its send to another. The crowd
-- stream says how far a run got; this table only says when to look.
CREATE TABLE crowd_schedule (
    crowd_id      TEXT    PRIMARY KEY,
    tenant_id     TEXT    NOT NULL,
    -- Milliseconds since the Unix epoch.
    due_at        INTEGER  NOT NULL,
    claimed_by    TEXT,
    claimed_until INTEGER
);

CREATE INDEX crowd_schedule_due ON crowd_schedule (due_at);
