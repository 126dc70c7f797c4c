-- The real-time inbox streams a receiver's messages in the order the projection delivered them:
-- each row keeps the log place of its delivery (the MessageDispatched event), which is the
-- stream's event id, so a client resumes after the last one it saw (`Last-Event-ID`).
-- On SQLite the transaction id is always 0: rowid order is commit order.
ALTER TABLE inbox_messages ADD COLUMN delivered_tx INTEGER;
ALTER TABLE inbox_messages ADD COLUMN delivered_pos INTEGER;

UPDATE inbox_messages
   SET delivered_tx = 0,
       delivered_pos = (SELECT e.global_position FROM events e
                         WHERE e.stream_id = 'message-' || inbox_messages.message_id
                           AND e.event_type = 'MessageDispatched')
 WHERE delivered_at IS NOT NULL;

CREATE INDEX inbox_messages_delivery ON inbox_messages (tenant_id, receiver, delivered_tx, delivered_pos);
