-- Where a job's messages are, and the balance it left, as typed columns instead of keys in
-- the `context` JSON (which a restart had to read back with int(...)). Plain ADD COLUMNs: no
-- rebuild. The ids are backfilled from `context`, where they may be JSON numbers or strings
-- of digits; anything else (or a negative balance) is left NULL, as if never recorded.
-- `context` itself is no longer read or written; the column stays (SQLite's DROP COLUMN
-- would only save a few bytes a row) and new rows get its default '{}'.
ALTER TABLE jobs ADD COLUMN status_channel_id INTEGER;
ALTER TABLE jobs ADD COLUMN status_message_id INTEGER;
ALTER TABLE jobs ADD COLUMN thread_id INTEGER;
ALTER TABLE jobs ADD COLUMN balance_after INTEGER
    CHECK (balance_after IS NULL OR balance_after >= 0);

UPDATE jobs SET
    status_channel_id = CASE
        WHEN typeof(json_extract(context, '$.status_channel_id')) = 'integer'
            THEN json_extract(context, '$.status_channel_id')
        WHEN typeof(json_extract(context, '$.status_channel_id')) = 'text'
             AND json_extract(context, '$.status_channel_id') GLOB '[0-9]*'
             AND NOT json_extract(context, '$.status_channel_id') GLOB '*[^0-9]*'
            THEN CAST(json_extract(context, '$.status_channel_id') AS INTEGER)
    END,
    status_message_id = CASE
        WHEN typeof(json_extract(context, '$.status_message_id')) = 'integer'
            THEN json_extract(context, '$.status_message_id')
        WHEN typeof(json_extract(context, '$.status_message_id')) = 'text'
             AND json_extract(context, '$.status_message_id') GLOB '[0-9]*'
             AND NOT json_extract(context, '$.status_message_id') GLOB '*[^0-9]*'
            THEN CAST(json_extract(context, '$.status_message_id') AS INTEGER)
    END,
    thread_id = CASE
        WHEN typeof(json_extract(context, '$.thread_id')) = 'integer'
            THEN json_extract(context, '$.thread_id')
        WHEN typeof(json_extract(context, '$.thread_id')) = 'text'
             AND json_extract(context, '$.thread_id') GLOB '[0-9]*'
             AND NOT json_extract(context, '$.thread_id') GLOB '*[^0-9]*'
            THEN CAST(json_extract(context, '$.thread_id') AS INTEGER)
    END,
    balance_after = CASE
        WHEN typeof(json_extract(context, '$.balance_after')) = 'integer'
             AND json_extract(context, '$.balance_after') >= 0
            THEN json_extract(context, '$.balance_after')
        WHEN typeof(json_extract(context, '$.balance_after')) = 'text'
             AND json_extract(context, '$.balance_after') GLOB '[0-9]*'
             AND NOT json_extract(context, '$.balance_after') GLOB '*[^0-9]*'
            THEN CAST(json_extract(context, '$.balance_after') AS INTEGER)
    END
WHERE json_valid(context);
