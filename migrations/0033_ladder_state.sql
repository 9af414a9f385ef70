-- The ladder's own record of its rounds and of what it had to discard, so
-- that /health and /metrics see a stopped or failing ladder without reading
-- pg_cron's tables (which live in cron.database_name, maybe another
-- database). One row, written by ladder_run() and ladder_rollup() through
-- the helpers in functions/ladder_health.sql.
CREATE TABLE ladder_state (
    singleton        boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    -- When this record began: with no completed round, the ladder is late from here.
    since            timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,                  -- the latest round's start
    finished_at      timestamptz,                  -- the latest round that completed
    duration         interval,                     -- how long that round took
    failed_at        timestamptz,                  -- the latest round that failed
    error            text,                         -- which step, and why
    rounds           bigint      NOT NULL DEFAULT 0,  -- rounds completed
    failures         bigint      NOT NULL DEFAULT 0,  -- rounds failed
    -- Dirty (target, hour) marks dropped because the hour's raw pings had
    -- outlived raw_retention: pings that never reached a summary or segment.
    discarded_marks  bigint      NOT NULL DEFAULT 0,
    discarded_at     timestamptz,                  -- when marks were last discarded
    discarded_hour   timestamptz                   -- the newest hour ever discarded
);
INSERT INTO ladder_state DEFAULT VALUES;
