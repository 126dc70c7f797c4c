-- Lists a tenant's templates, newest first. Kept in the transaction that appends the template's
-- events, so a list always shows what the last command did; the template itself is read from
-- its stream.
CREATE TABLE template_index (
    tenant_id   TEXT   NOT NULL,
    template_id TEXT   NOT NULL,
    name        TEXT   NOT NULL,
    channel     TEXT   NOT NULL,
    PRIMARY KEY (tenant_id, template_id)
);

-- Settings Herald makes for itself on first start and every process must share, such as the
-- key that signs click-tracking links.
CREATE TABLE herald_settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
