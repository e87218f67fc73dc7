-- Credits: one account per (guild, user). `balance` is spendable, `held` is reserved for
-- jobs in flight. Both can never go negative: the CHECKs back up the conditional UPDATEs.
CREATE TABLE accounts (
    guild_id   INTEGER NOT NULL,
    user_id    INTEGER NOT NULL,
    balance    INTEGER NOT NULL DEFAULT 0 CHECK (balance >= 0),
    held       INTEGER NOT NULL DEFAULT 0 CHECK (held >= 0),
    created_at REAL    NOT NULL,
    PRIMARY KEY (guild_id, user_id)
) STRICT;

-- One row per generation. Every state change is written before the side effect it allows.
CREATE TABLE jobs (
    id                   INTEGER PRIMARY KEY,
    guild_id             INTEGER NOT NULL,
    channel_id           INTEGER NOT NULL,
    user_id              INTEGER NOT NULL,
    state                TEXT    NOT NULL CHECK (state IN
                            ('queued', 'submitting', 'running', 'delivering',
                             'delivered', 'failed', 'cancelled')),
    request              TEXT    NOT NULL,            -- the WaveSpeed submit body, JSON
    price                INTEGER NOT NULL CHECK (price > 0),
    task_id              TEXT UNIQUE,                 -- WaveSpeed prediction id, once known
    output_url           TEXT,
    output_nsfw          INTEGER CHECK (output_nsfw IN (0, 1)),
    submit_attempts      INTEGER NOT NULL DEFAULT 0,  -- POSTs refused unprocessed (429/503/connect)
    not_before           REAL,                        -- earliest next submit after a refusal
    failure_code         TEXT,
    failure_detail       TEXT,                        -- safe to show the user
    needs_reconciliation INTEGER NOT NULL DEFAULT 0 CHECK (needs_reconciliation IN (0, 1)),
    reconciliation_note  TEXT,
    delivery             TEXT,                        -- receipt from the delivery, JSON
    context              TEXT    NOT NULL DEFAULT '{}', -- front end's own data, JSON
    notified             INTEGER NOT NULL DEFAULT 0 CHECK (notified IN (0, 1)),
    created_at           REAL    NOT NULL,
    submitted_at         REAL,
    finished_at          REAL,
    updated_at           REAL    NOT NULL,
    FOREIGN KEY (guild_id, user_id) REFERENCES accounts (guild_id, user_id)
) STRICT;
CREATE INDEX jobs_active ON jobs (state)
    WHERE state IN ('queued', 'submitting', 'running', 'delivering');
CREATE INDEX jobs_by_user ON jobs (guild_id, user_id, id);

-- Every transition, for operators reading what happened to a job.
CREATE TABLE job_events (
    id         INTEGER PRIMARY KEY,
    job_id     INTEGER NOT NULL REFERENCES jobs (id),
    from_state TEXT,
    to_state   TEXT    NOT NULL,
    detail     TEXT,
    at         REAL    NOT NULL
) STRICT;
CREATE INDEX job_events_by_job ON job_events (job_id, id);

-- Credits held for one job. Settled exactly once: captured on delivery or released.
CREATE TABLE reservations (
    id         INTEGER PRIMARY KEY,
    job_id     INTEGER NOT NULL UNIQUE REFERENCES jobs (id),
    guild_id   INTEGER NOT NULL,
    user_id    INTEGER NOT NULL,
    amount     INTEGER NOT NULL CHECK (amount > 0),
    status     TEXT    NOT NULL CHECK (status IN ('held', 'captured', 'released')),
    created_at REAL    NOT NULL,
    settled_at REAL,
    FOREIGN KEY (guild_id, user_id) REFERENCES accounts (guild_id, user_id)
) STRICT;

-- Append-only: every change of balance or held is one row here, so for each account
-- SUM(delta_balance) = balance and SUM(delta_held) = held.
CREATE TABLE ledger (
    id             INTEGER PRIMARY KEY,
    guild_id       INTEGER NOT NULL,
    user_id        INTEGER NOT NULL,
    kind           TEXT    NOT NULL CHECK (kind IN
                      ('grant', 'revoke', 'adjust', 'reserve', 'capture', 'release')),
    delta_balance  INTEGER NOT NULL,
    delta_held     INTEGER NOT NULL,
    balance_after  INTEGER NOT NULL CHECK (balance_after >= 0),
    held_after     INTEGER NOT NULL CHECK (held_after >= 0),
    reservation_id INTEGER REFERENCES reservations (id),
    job_id         INTEGER REFERENCES jobs (id),
    actor_id       INTEGER,          -- who caused it; NULL means the bot itself
    reason         TEXT,
    created_at     REAL    NOT NULL,
    FOREIGN KEY (guild_id, user_id) REFERENCES accounts (guild_id, user_id)
) STRICT;
CREATE UNIQUE INDEX ledger_once_per_reservation ON ledger (reservation_id, kind)
    WHERE reservation_id IS NOT NULL;
CREATE INDEX ledger_by_account ON ledger (guild_id, user_id, id);

CREATE TRIGGER ledger_no_update BEFORE UPDATE ON ledger
BEGIN
    SELECT RAISE(ABORT, 'the ledger is append-only');
END;
CREATE TRIGGER ledger_no_delete BEFORE DELETE ON ledger
BEGIN
    SELECT RAISE(ABORT, 'the ledger is append-only');
END;
