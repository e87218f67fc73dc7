-- What starts a job, once: the command's interaction, or the offer a Confirm button accepts.
-- Two presses of one button carry one key, so the second finds the first one's job.
ALTER TABLE jobs ADD COLUMN start_key TEXT;
CREATE UNIQUE INDEX jobs_start_key ON jobs (start_key) WHERE start_key IS NOT NULL;

-- When the engine began posting the clip, first and latest attempt (wall clock). After a
-- crash or a lost reply the delivery looks for its own post in exactly that window.
ALTER TABLE jobs ADD COLUMN delivery_started_at REAL;
ALTER TABLE jobs ADD COLUMN delivery_attempted_at REAL;

-- A job that timed out (refunded) while WaveSpeed may still finish it is watched until
-- `watch_until`; what became of it then is `late_outcome`.
ALTER TABLE jobs ADD COLUMN watch_until REAL;
ALTER TABLE jobs ADD COLUMN late_outcome TEXT CHECK (late_outcome IS NULL OR late_outcome IN
    ('delivered', 'withheld', 'failed', 'missing', 'expired', 'undeliverable'));
CREATE INDEX jobs_watched ON jobs (watch_until)
    WHERE watch_until IS NOT NULL AND late_outcome IS NULL;

-- Set by /credits set on the reservations open at that moment: the balance was set to an
-- exact amount, so a later release of these holds ends the hold without refunding it.
ALTER TABLE reservations ADD COLUMN refund_forfeited INTEGER NOT NULL DEFAULT 0
    CHECK (refund_forfeited IN (0, 1));

-- A price shown with Confirm / Not now buttons (cost confirmation, Re-roll). The token is in
-- the buttons' custom_id, so they keep working after a restart; the job it starts carries
-- start_key 'offer:<token>', so however often Confirm is pressed it starts one job.
CREATE TABLE start_offers (
    token      TEXT    PRIMARY KEY,
    guild_id   INTEGER NOT NULL,
    user_id    INTEGER NOT NULL,
    channel_id INTEGER NOT NULL,
    request    TEXT    NOT NULL,                 -- the GenerationRequest, JSON
    price      INTEGER NOT NULL CHECK (price > 0), -- as shown to the member
    created_at REAL    NOT NULL,
    expires_at REAL    NOT NULL,
    declined   INTEGER NOT NULL DEFAULT 0 CHECK (declined IN (0, 1))
) STRICT;
