-- A submit whose reply was lost is looked up in WaveSpeed's history instead of written off:
-- a new job state, 'checking' (credits still held), and what the search found. SQLite cannot
-- change a CHECK constraint in place, so `jobs` is rebuilt (SQLite's documented procedure;
-- the migration runner turns foreign keys off around it and runs foreign_key_check).
CREATE TABLE jobs_new (
    id                    INTEGER PRIMARY KEY,
    guild_id              INTEGER NOT NULL,
    channel_id            INTEGER NOT NULL,
    user_id               INTEGER NOT NULL,
    state                 TEXT    NOT NULL CHECK (state IN
                             ('queued', 'submitting', 'checking', 'running', 'delivering',
                              'delivered', 'failed', 'cancelled')),
    request               TEXT    NOT NULL,
    price                 INTEGER NOT NULL CHECK (price > 0),
    task_id               TEXT UNIQUE,
    output_url            TEXT,
    output_nsfw           INTEGER CHECK (output_nsfw IN (0, 1)),
    submit_attempts       INTEGER NOT NULL DEFAULT 0,
    not_before            REAL,
    failure_code          TEXT,
    failure_detail        TEXT,
    needs_reconciliation  INTEGER NOT NULL DEFAULT 0 CHECK (needs_reconciliation IN (0, 1)),
    reconciliation_note   TEXT,
    delivery              TEXT,
    context               TEXT    NOT NULL DEFAULT '{}',
    notified              INTEGER NOT NULL DEFAULT 0 CHECK (notified IN (0, 1)),
    created_at            REAL    NOT NULL,
    submitted_at          REAL,
    finished_at           REAL,
    updated_at            REAL    NOT NULL,
    start_key             TEXT,
    delivery_started_at   REAL,
    delivery_attempted_at REAL,
    watch_until           REAL,
    late_outcome          TEXT CHECK (late_outcome IS NULL OR late_outcome IN
                             ('delivered', 'withheld', 'failed', 'missing', 'expired',
                              'undeliverable')),
    -- When the submit POST ended without a known outcome; NULL if the bot stopped mid-POST.
    submit_ended_at       REAL,
    -- What the history search for a lost submit found: 'adopted' (one candidate, taken),
    -- 'adopted_by_hand' (ops reconcile --task), 'not_found' or 'ambiguous' (refunded and
    -- flagged), 'unchecked' (the history could not be read in time; refunded and flagged).
    lost_outcome          TEXT CHECK (lost_outcome IS NULL OR lost_outcome IN
                             ('adopted', 'adopted_by_hand', 'not_found', 'ambiguous',
                              'unchecked')),
    -- JSON list of the task ids that matched at the last search (for ambiguous ones).
    lost_candidates       TEXT,
    FOREIGN KEY (guild_id, user_id) REFERENCES accounts (guild_id, user_id)
) STRICT;

INSERT INTO jobs_new (
    id, guild_id, channel_id, user_id, state, request, price, task_id, output_url,
    output_nsfw, submit_attempts, not_before, failure_code, failure_detail,
    needs_reconciliation, reconciliation_note, delivery, context, notified, created_at,
    submitted_at, finished_at, updated_at, start_key, delivery_started_at,
    delivery_attempted_at, watch_until, late_outcome)
SELECT
    id, guild_id, channel_id, user_id, state, request, price, task_id, output_url,
    output_nsfw, submit_attempts, not_before, failure_code, failure_detail,
    needs_reconciliation, reconciliation_note, delivery, context, notified, created_at,
    submitted_at, finished_at, updated_at, start_key, delivery_started_at,
    delivery_attempted_at, watch_until, late_outcome
FROM jobs;

DROP TABLE jobs;
ALTER TABLE jobs_new RENAME TO jobs;

CREATE INDEX jobs_active ON jobs (state)
    WHERE state IN ('queued', 'submitting', 'checking', 'running', 'delivering');
CREATE INDEX jobs_by_user ON jobs (guild_id, user_id, id);
CREATE INDEX jobs_by_guild_time ON jobs (guild_id, created_at);
CREATE UNIQUE INDEX jobs_start_key ON jobs (start_key) WHERE start_key IS NOT NULL;
CREATE INDEX jobs_watched ON jobs (watch_until)
    WHERE watch_until IS NOT NULL AND late_outcome IS NULL;
CREATE INDEX jobs_lost ON jobs (submitted_at) WHERE lost_outcome IS NOT NULL;

-- One active bot per database. The active process holds this row and renews it; another
-- process started on the same file waits as a standby until `expires_at` passes (the
-- holder died) or the row is released (a clean stop), then takes over. Every write
-- transaction of the holder checks it still holds the row (storage.database fencing).
CREATE TABLE instance_lease (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    acquired_at REAL NOT NULL,
    renewed_at  REAL NOT NULL,
    expires_at  REAL NOT NULL
) STRICT;
