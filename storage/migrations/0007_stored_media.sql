-- Copies of members' reference files kept in WaveSpeed's media storage (uploaded at
-- admission), so a queued job, a Re-roll or Use as reference never depends on a Discord
-- link. WaveSpeed keeps uploads 7 days: `expires_at` is when this copy is gone. One row
-- per URL; a job's request names these URLs, and a URL not listed here is not ours (a job
-- from before this table, whose references were Discord links).
CREATE TABLE stored_media (
    url         TEXT    PRIMARY KEY,
    kind        TEXT    NOT NULL CHECK (kind IN ('video', 'audio')),
    bytes       INTEGER NOT NULL CHECK (bytes > 0),
    seconds     REAL    NOT NULL CHECK (seconds > 0),
    sha256      TEXT    NOT NULL,
    uploaded_at REAL    NOT NULL,
    expires_at  REAL    NOT NULL CHECK (expires_at > uploaded_at)
) STRICT;
