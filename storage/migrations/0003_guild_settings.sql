-- Per-server settings, changed by members with Manage Server. No row means every default:
-- generation allowed everywhere, by everyone, without limits. In the limit columns NULL
-- means "no limit"; a limit is never 0 (pausing is how a server stops all jobs).
CREATE TABLE guild_settings (
    guild_id              INTEGER PRIMARY KEY CHECK (guild_id > 0),
    required_role_id      INTEGER CHECK (required_role_id IS NULL OR required_role_id > 0),
    blocked_role_id       INTEGER CHECK (blocked_role_id IS NULL OR blocked_role_id > 0),
    daily_jobs            INTEGER CHECK (daily_jobs IS NULL OR daily_jobs > 0),
    cooldown_seconds      INTEGER NOT NULL DEFAULT 0 CHECK (cooldown_seconds >= 0),
    concurrent_jobs       INTEGER CHECK (concurrent_jobs IS NULL OR concurrent_jobs > 0),
    daily_spend_cap_cents INTEGER CHECK (daily_spend_cap_cents IS NULL
                                         OR daily_spend_cap_cents > 0),     -- US cents
    nsfw_policy           TEXT    NOT NULL DEFAULT 'spoiler'
                                  CHECK (nsfw_policy IN ('withhold', 'spoiler')),
    nsfw_charge           INTEGER CHECK (nsfw_charge IS NULL OR nsfw_charge IN (0, 1)),
                                                   -- NULL: the bot-wide NSFW_CHARGE
    allowance_amount      INTEGER NOT NULL DEFAULT 0 CHECK (allowance_amount >= 0), -- 0: off
    allowance_period      TEXT    NOT NULL DEFAULT 'day'
                                  CHECK (allowance_period IN ('day', 'week')),
    allowance_role_id     INTEGER CHECK (allowance_role_id IS NULL OR allowance_role_id > 0),
                                                   -- NULL: everyone gets the allowance
    allowance_cap         INTEGER CHECK (allowance_cap IS NULL OR allowance_cap > 0),
                                                   -- the allowance never lifts a balance above it
    audit_channel_id      INTEGER CHECK (audit_channel_id IS NULL OR audit_channel_id > 0),
    confirm_cost          INTEGER NOT NULL DEFAULT 0 CHECK (confirm_cost IN (0, 1)),
    paused                INTEGER NOT NULL DEFAULT 0 CHECK (paused IN (0, 1)),
    pause_message         TEXT    CHECK (pause_message IS NULL
                                         OR length(pause_message) BETWEEN 1 AND 500),
    updated_at            REAL    NOT NULL,
    updated_by            INTEGER                 -- who changed it last; NULL = the bot
) STRICT;

-- Where /ref2video may be used; no rows for a guild means everywhere.
CREATE TABLE guild_channels (
    guild_id   INTEGER NOT NULL REFERENCES guild_settings (guild_id),
    channel_id INTEGER NOT NULL CHECK (channel_id > 0),
    PRIMARY KEY (guild_id, channel_id)
) STRICT;

-- Words and regular expressions refused in prompts and negative prompts. Validated by
-- engine.policy.compile_pattern before they are stored.
CREATE TABLE guild_blocklist (
    id       INTEGER PRIMARY KEY,
    guild_id INTEGER NOT NULL REFERENCES guild_settings (guild_id),
    pattern  TEXT    NOT NULL CHECK (length(pattern) BETWEEN 1 AND 200),
    kind     TEXT    NOT NULL CHECK (kind IN ('word', 'regex')),
    added_by INTEGER,
    added_at REAL    NOT NULL,
    UNIQUE (guild_id, pattern)
) STRICT;

-- One row per (guild, user, period): the primary key makes "granted once per period"
-- hold however many commands race. A row with amount 0 (the user was already at the
-- cap) still uses up the period, so spending and acting again does not top up twice.
CREATE TABLE allowance_grants (
    guild_id     INTEGER NOT NULL,
    user_id      INTEGER NOT NULL,
    period       TEXT    NOT NULL CHECK (period IN ('day', 'week')),
    period_start INTEGER NOT NULL CHECK (period_start >= 0),   -- unix seconds, UTC
    amount       INTEGER NOT NULL DEFAULT 0 CHECK (amount >= 0),
    ledger_id    INTEGER REFERENCES ledger (id),
    granted_at   REAL    NOT NULL,
    PRIMARY KEY (guild_id, user_id, period, period_start),
    CHECK ((amount = 0) = (ledger_id IS NULL)),
    FOREIGN KEY (guild_id, user_id) REFERENCES accounts (guild_id, user_id)
) STRICT;

-- Daily spend and job counts per server (engine.policy limits, /admin status).
CREATE INDEX jobs_by_guild_time ON jobs (guild_id, created_at);
