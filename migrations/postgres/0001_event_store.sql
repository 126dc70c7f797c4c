-- The event log and the tables that let subscribers and consumer groups follow it.
-- Applied migrations are never edited: add a new file instead.

CREATE TABLE events (
    global_position BIGINT GENERATED ALWAYS AS IDENTITY,
    -- The writing transaction's id; readers order by (transaction_id, global_position)
    -- and only read below the oldest running transaction, so they never skip an event.
    transaction_id  xid8        NOT NULL DEFAULT pg_current_xact_id(),
    stream_id       TEXT        NOT NULL,
    stream_position BIGINT      NOT NULL,
    category        TEXT        NOT NULL,
    partition_key   SMALLINT    NOT NULL,
    event_id        UUID        NOT NULL,
    event_type      TEXT        NOT NULL,
    schema_version  SMALLINT    NOT NULL,
    data            JSONB       NOT NULL,
    metadata        JSONB       NOT NULL,
    recorded_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT events_pkey PRIMARY KEY (stream_id, stream_position),
    CONSTRAINT events_event_id_key UNIQUE (event_id)
);

CREATE INDEX events_log_order ON events (transaction_id, global_position);

-- Where each subscription (and each partition of a consumer group) has read to.
CREATE TABLE checkpoints (
    subscription    TEXT        NOT NULL,
    partition       INTEGER     NOT NULL,
    transaction_id  BIGINT      NOT NULL,
    global_position BIGINT      NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (subscription, partition)
);

-- Which member of a consumer group owns which virtual partition, until when.
CREATE TABLE subscription_leases (
    subscription TEXT        NOT NULL,
    partition    INTEGER     NOT NULL,
    owner        TEXT,
    expires_at   TIMESTAMPTZ,
    PRIMARY KEY (subscription, partition)
);

-- The live members of each consumer group, for a fair share of partitions.
CREATE TABLE subscription_members (
    subscription TEXT        NOT NULL,
    member       TEXT        NOT NULL,
    expires_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (subscription, member)
);
