-- Tenants and their API keys. A key is stored as its id and the SHA-256 of its secret,
-- so the table never holds anything a caller could present.
-- Applied migrations are never edited: add a new file instead.

CREATE TABLE tenants (
    id         TEXT        PRIMARY KEY,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Authentication looks a key up by its primary key alone, once per request.
CREATE TABLE api_keys (
    key_id      TEXT        PRIMARY KEY,
    tenant_id   TEXT        NOT NULL REFERENCES tenants (id),
    -- Lowercase hex SHA-256 of the secret part of the key.
    secret_hash TEXT        NOT NULL,
    -- A comma-separated list of scopes: send, recall, read, admin.
    scopes      TEXT        NOT NULL,
    label       TEXT        NOT NULL DEFAULT '',
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Set once when the key is revoked; a revoked key never authenticates again.
    revoked_at  TIMESTAMPTZ
);
