-- Statistics, reconciliation and the in-app inbox: three projections, each written by its own
-- subscription (`projection-stats`, `projection-reconciliation`, `projection-inbox`) in the
-- transaction that moves its checkpoint. Instants are milliseconds since the Unix epoch.

-- Daily counters: each event counts on the UTC day it happened, under the tenant, template and
-- channel of its message and the channel account it concerns ('' before any supplier attempt).
CREATE TABLE stats_daily (
    tenant_id       TEXT   NOT NULL,
    day             TEXT   NOT NULL,
    template_id     TEXT   NOT NULL,
    channel         TEXT   NOT NULL,
    account         TEXT   NOT NULL,
    accepted        BIGINT NOT NULL DEFAULT 0,
    deduplicated    BIGINT NOT NULL DEFAULT 0,
    shielded        BIGINT NOT NULL DEFAULT 0,
    discarded       BIGINT NOT NULL DEFAULT 0,
    deferred        BIGINT NOT NULL DEFAULT 0,
    dispatched      BIGINT NOT NULL DEFAULT 0,
    dispatch_failed BIGINT NOT NULL DEFAULT 0,
    failed          BIGINT NOT NULL DEFAULT 0,
    delivered       BIGINT NOT NULL DEFAULT 0,
    undelivered     BIGINT NOT NULL DEFAULT 0,
    clicked         BIGINT NOT NULL DEFAULT 0,
    recalled        BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, day, template_id, channel, account)
);

-- What the stats projection remembers of each message: the events after acceptance do not
-- say whose message they are, and a receipt is counted once, where it was counted last.
CREATE TABLE stats_messages (
    message_id  TEXT    PRIMARY KEY,
    tenant_id   TEXT    NOT NULL,
    template_id TEXT    NOT NULL,
    channel     TEXT    NOT NULL,
    -- The account of the latest supplier attempt; '' before the first.
    account     TEXT    NOT NULL,
    dispatched  BOOLEAN NOT NULL,
    -- The latest receipt's outcome, and the day it was counted on (NULL while the message is
    -- not dispatched yet: an early receipt counts with the dispatch).
    receipt     TEXT,
    receipt_day TEXT
);

-- Reconciliation: one row per message, from acceptance; rows of messages that can no longer be
-- dispatched are removed. `dispatched_at` is set by `MessageDispatched`.
CREATE TABLE reconciliation_messages (
    message_id          TEXT PRIMARY KEY,
    tenant_id           TEXT NOT NULL,
    account             TEXT,
    supplier            TEXT,
    supplier_message_id TEXT,
    dispatched_at       BIGINT,
    -- The latest receipt's outcome.
    receipt             TEXT
);

CREATE INDEX reconciliation_messages_day ON reconciliation_messages (account, dispatched_at);

-- The in-app inbox: INBOX messages by receiver, shown once delivered, removed when recalled or
-- when dispatch gives them up.
CREATE TABLE inbox_messages (
    message_id   TEXT   PRIMARY KEY,
    tenant_id    TEXT   NOT NULL,
    receiver     TEXT   NOT NULL,
    template_id  TEXT   NOT NULL,
    -- The content kind (TEXT, MARKDOWN, CARD, EMAIL) and its fields, as rendered at acceptance.
    kind         TEXT   NOT NULL,
    title        TEXT,
    body         TEXT   NOT NULL,
    url          TEXT,
    -- Sensitive words masked at dispatch: the log keeps only their number, not the masked text.
    masked_words BIGINT NOT NULL DEFAULT 0,
    accepted_at  BIGINT NOT NULL,
    delivered_at BIGINT,
    read_at      BIGINT
);

CREATE INDEX inbox_messages_receiver ON inbox_messages (tenant_id, receiver, message_id);
