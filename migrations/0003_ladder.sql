-- The contraction ladder: its configuration, the tiers it builds, and the
-- record of which (target, hour) blocks received pings and need (re)building.
-- docs/contraction.md explains the rule and the defaults.

-- Segment levels 1..k. Level L+1 is built from level L; spans nest.
CREATE TABLE ladder_levels (
    level            smallint PRIMARY KEY CHECK (level >= 1),
    abs_tolerance_us integer  NOT NULL CHECK (abs_tolerance_us >= 0),
    rel_tolerance    numeric(6, 4) NOT NULL CHECK (rel_tolerance >= 0),
    -- A segment never crosses a block of this length aligned to 2000-01-01 UTC.
    max_span         interval NOT NULL CHECK (
        date_part('year', max_span) = 0 AND date_part('month', max_span) = 0
        AND max_span >= interval '1 hour'
        AND extract(epoch FROM max_span)::bigint % 3600 = 0),
    retention        interval NOT NULL
);

INSERT INTO ladder_levels (level, abs_tolerance_us, rel_tolerance, max_span, retention) VALUES
    (1,  2000, 0.10, interval '1 hour', interval '90 days'),
    (2, 10000, 0.30, interval '1 day',  interval '5 years');

-- Everything else, in one row.
CREATE TABLE ladder_settings (
    singleton            boolean  PRIMARY KEY DEFAULT true CHECK (singleton),
    -- An hour is rolled up once it ended this long ago (late data is handled anyway).
    settle_delay         interval NOT NULL DEFAULT interval '2 minutes',
    -- A day of row-form pings is packed once it ended this long ago.
    pack_after           interval NOT NULL DEFAULT interval '1 day',
    -- Every ping (row or packed form) is kept this long.
    raw_retention        interval NOT NULL DEFAULT interval '14 days',
    hourly_retention     interval NOT NULL DEFAULT interval '5 years',
    partition_days_ahead integer  NOT NULL DEFAULT 7 CHECK (partition_days_ahead >= 1),
    -- (target, hour) blocks rolled up per transaction.
    rollup_batch         integer  NOT NULL DEFAULT 2000 CHECK (rollup_batch >= 1)
);
INSERT INTO ladder_settings DEFAULT VALUES;

-- Segments of every level. RTTs in microseconds; sum and sum of squares make
-- mean and (population) standard deviation exact. A lost segment has
-- lost = count, NULL min/max/hops/ttl and zero sums. One partition per level,
-- made by ensure_segment_partitions() (functions/partitions.sql).
CREATE TABLE segments (
    target_id bigint      NOT NULL,
    level     smallint    NOT NULL,
    start_ts  timestamptz NOT NULL,  -- first ping
    end_ts    timestamptz NOT NULL,  -- last ping, inclusive
    count     integer     NOT NULL,
    lost      integer     NOT NULL,
    min_us    integer,
    max_us    integer,
    sum_us    bigint      NOT NULL,
    sumsq_us  numeric     NOT NULL,
    hops      smallint,
    ttl       smallint,
    PRIMARY KEY (target_id, level, start_ts)
) PARTITION BY LIST (level);

-- One row per target and hour. RTT figures over answered pings, in µs;
-- percentiles are percentile_cont over the hour's raw RTTs; jitter is the
-- mean absolute difference of successive answered RTTs.
CREATE TABLE hourly_summaries (
    target_id   bigint      NOT NULL,
    hour        timestamptz NOT NULL,
    count       integer     NOT NULL,
    lost        integer     NOT NULL,
    min_us      integer,
    max_us      integer,
    sum_us      bigint      NOT NULL,
    sumsq_us    numeric     NOT NULL,
    mean_us     double precision,
    stddev_us   double precision,
    p50_us      double precision,
    p95_us      double precision,
    p99_us      double precision,
    jitter_us   double precision,
    hops_min    smallint,
    hops_max    smallint,
    hop_changes integer     NOT NULL,
    loss_runs   integer     NOT NULL,
    PRIMARY KEY (target_id, hour)
);

-- (target, hour) blocks that received pings since they were last rolled up.
-- Filled by the trigger pings_mark_dirty (functions/ladder.sql) on every
-- insert into pings, so on-time and late data take the same path and the
-- writer needs no change.
CREATE TABLE ladder_dirty (
    target_id bigint      NOT NULL,
    hour      timestamptz NOT NULL,
    PRIMARY KEY (target_id, hour)
);
CREATE INDEX ladder_dirty_hour ON ladder_dirty (hour);
-- Pings stored before the ladder existed are rolled up like late ones.
INSERT INTO ladder_dirty (target_id, hour)
SELECT DISTINCT target_id, date_bin(interval '1 hour', ts, timestamptz '2000-01-01 00:00:00+00')
FROM pings;
