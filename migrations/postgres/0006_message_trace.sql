-- The message trace projection: one row per message with its current status and where it went,
-- and its timeline, one row per event. Written by the `projection-trace` subscription in the
-- transaction that moves its checkpoint. Instants are milliseconds since the Unix epoch.
CREATE TABLE message_trace (
    message_id          TEXT    PRIMARY KEY,
    tenant_id           TEXT    NOT NULL,
    request_id          TEXT    NOT NULL,
    receiver            TEXT    NOT NULL,
    template_id         TEXT    NOT NULL,
    channel             TEXT    NOT NULL,
    msg_type            TEXT    NOT NULL,
    status              TEXT    NOT NULL,
    last_receipt        TEXT,
    account             TEXT,
    supplier            TEXT,
    supplier_message_id TEXT,
    attempts            BIGINT NOT NULL DEFAULT 0,
    clicks              BIGINT NOT NULL DEFAULT 0,
    accepted_at         BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL
);

-- Customer service looks a receiver up, newest first; message ids (UUID v7) sort by time.
CREATE INDEX message_trace_receiver ON message_trace (tenant_id, receiver, message_id);
CREATE INDEX message_trace_request ON message_trace (tenant_id, request_id);
CREATE INDEX message_trace_tenant ON message_trace (tenant_id, message_id);

CREATE TABLE message_timeline (
    message_id TEXT    NOT NULL,
    -- The event's position in the message's stream.
    seq        BIGINT NOT NULL,
    kind       TEXT    NOT NULL,
    at         BIGINT NOT NULL,
    -- The event's data, as JSON.
    detail     TEXT    NOT NULL,
    PRIMARY KEY (message_id, seq)
);
