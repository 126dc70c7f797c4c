-- The log keeps each event's data and metadata as `json` (the text as written, checked to be
-- JSON) instead of `jsonb`. Herald never looks inside them in SQL to find events: it reads
-- each event whole and decodes it in the process. `jsonb` parsed every appended value into its
-- binary form (sorting its keys) and printed it back as text on every read, and `herald bench`
-- found that to be a quarter of what an accepted message cost Postgres. `json` also takes
-- every string JSON allows: `jsonb` refuses the escape \u0000.
-- This rewrites the table (on the bench's machine, about 8 s per million events; the table is
-- locked meanwhile).
ALTER TABLE events
    ALTER COLUMN data TYPE json USING data::json,
    ALTER COLUMN metadata TYPE json USING metadata::json;
