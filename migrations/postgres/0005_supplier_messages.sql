-- The supplier's own id of each dispatched message, so a receipt that names only that id
-- (a WeChat template-send event, a supplier's push) finds its message. Written in the
-- transaction that records `MessageDispatched`.
CREATE TABLE supplier_messages (
    account_id          TEXT NOT NULL,
    supplier_message_id TEXT NOT NULL,
    message_id          TEXT NOT NULL,
    PRIMARY KEY (account_id, supplier_message_id)
);
