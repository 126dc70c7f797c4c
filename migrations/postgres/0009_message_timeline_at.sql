-- Alerts count the outcomes recorded in a recent window: find them by kind and time, not by
-- reading the whole timeline.
CREATE INDEX message_timeline_kind_at ON message_timeline (kind, at);
