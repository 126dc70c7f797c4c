-- A timeline row keeps where and when (the message, the event's position in its stream, the
-- kind, the time); what the event said is read from the log itself (`events`, by its key
-- `(stream_id, stream_position)`) when a message is shown. The copy doubled what the trace
-- projection wrote, and the log is kept whole.
ALTER TABLE message_timeline DROP COLUMN detail;
