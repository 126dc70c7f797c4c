-- The real-time inbox streams a receiver's messages in the order the projection delivered them:
-- each row keeps the log place of its delivery (the MessageDispatched event), which is the
-- stream's event id, so a client resumes after the last one it saw (`Last-Event-ID`).
ALTER TABLE inbox_messages ADD COLUMN delivered_tx BIGINT;
ALTER TABLE inbox_messages ADD COLUMN delivered_pos BIGINT;

UPDATE inbox_messages i
   SET delivered_tx = e.transaction_id::text::int8, delivered_pos = e.global_position
  FROM events e
 WHERE e.stream_id = 'message-' || i.message_id
   AND e.event_type = 'MessageDispatched'
   AND i.delivered_at IS NOT NULL;

CREATE INDEX inbox_messages_delivery ON inbox_messages (tenant_id, receiver, delivered_tx, delivered_pos);
