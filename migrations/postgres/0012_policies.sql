-- Live policy scopes: a tenant (`template_id` empty) or one template of it. The rules are the
-- scope's stream (`policy-…`); this index, written in the transaction that appends to it,
-- lists the scopes with their stream versions, so every process notices a change by reading
-- one small table.
CREATE TABLE policies (
    stream_id   TEXT   PRIMARY KEY,
    tenant_id   TEXT   NOT NULL,
    template_id TEXT   NOT NULL,
    version     BIGINT NOT NULL
);
