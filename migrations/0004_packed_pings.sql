-- Settled raw pings, packed losslessly: one row per target and hour, written
-- and read by the functions of functions/packed_pings.sql.
--
-- Encoding (frame of reference + bit packing, docs/contraction.md):
--   times: first_ts, then n-1 gaps in µs stored as (gap - ts_step) in ts_width bits
--   RTTs:  code 0 = lost, else rtt_us - rtt_base + 1, in rtt_width bits
--   TTL and hops: runs; run_start[k] is the index of the first ping of run k
CREATE TABLE pings_packed (
    target_id   bigint      NOT NULL,
    block_start timestamptz NOT NULL,
    n           integer     NOT NULL CHECK (n > 0),
    first_ts    timestamptz NOT NULL,
    ts_step     bigint      NOT NULL,
    ts_width    smallint    NOT NULL,
    ts_bits     varbit      NOT NULL,
    rtt_base    integer     NOT NULL,
    rtt_width   smallint    NOT NULL,
    rtt_bits    varbit      NOT NULL,
    run_start   integer[]   NOT NULL,
    run_ttl     smallint[]  NOT NULL,
    run_hops    smallint[]  NOT NULL,
    PRIMARY KEY (target_id, block_start)
);
