-- Channel accounts made at run time. The account itself is its stream
-- (`channel_account-{id}`); this index, written in the transaction that appends the account's
-- events, lists the accounts and carries each stream's version, so a process notices a change
-- by reading one small table.
CREATE TABLE channel_accounts (
    account_id TEXT   PRIMARY KEY,
    tenant_id  TEXT   NOT NULL,
    version    BIGINT NOT NULL
);

-- The accounts' secrets, sealed with AES-256-GCM (`v1.{key id}.{nonce, ciphertext and tag}`);
-- never plaintext. Kept beside the log rather than in it, so `herald keys rotate` re-seals them
-- without rewriting events, and an export of the log carries no secret.
CREATE TABLE account_secrets (
    account_id TEXT NOT NULL,
    name       TEXT NOT NULL,
    sealed     TEXT NOT NULL,
    PRIMARY KEY (account_id, name)
);
