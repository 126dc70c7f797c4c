-- The event log and the tables that let subscribers and consumer groups follow it.
-- SQLite has one writer at a time, so rowid order is commit order and is the log order.
-- Applied migrations are never edited: add a new file instead.

CREATE TABLE events (
    global_position INTEGER PRIMARY KEY,
    stream_id       TEXT    NOT NULL,
    stream_position INTEGER NOT NULL,
    category        TEXT    NOT NULL,
    partition_key   INTEGER NOT NULL,
    event_id        BLOB    NOT NULL,
    event_type      TEXT    NOT NULL,
    schema_version  INTEGER NOT NULL,
    data            TEXT    NOT NULL,
    metadata        TEXT    NOT NULL,
    -- Microseconds since the Unix epoch.
    recorded_at     INTEGER NOT NULL
);

CREATE UNIQUE INDEX events_stream ON events (stream_id, stream_position);
CREATE UNIQUE INDEX events_event_id ON events (event_id);

CREATE TABLE checkpoints (
    subscription    TEXT    NOT NULL,
    partition       INTEGER NOT NULL,
    transaction_id  INTEGER NOT NULL,
    global_position INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    PRIMARY KEY (subscription, partition)
);

-- Times in these two tables are milliseconds since the Unix epoch.
CREATE TABLE subscription_leases (
    subscription TEXT    NOT NULL,
    partition    INTEGER NOT NULL,
    owner        TEXT,
    expires_at   INTEGER,
    PRIMARY KEY (subscription, partition)
);

CREATE TABLE subscription_members (
    subscription TEXT    NOT NULL,
    member       TEXT    NOT NULL,
    expires_at   INTEGER NOT NULL,
    PRIMARY KEY (subscription, member)
);
