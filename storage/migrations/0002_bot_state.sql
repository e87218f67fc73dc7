-- Small facts the bot keeps between runs, e.g. the hash of the last synced command tree.
CREATE TABLE bot_state (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at REAL NOT NULL
) STRICT;
