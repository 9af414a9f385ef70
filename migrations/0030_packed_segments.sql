-- Long-lived segment levels packed: one row per target and block of the
-- level (a day for levels 2 and 3) instead of one row per segment. The row
-- form stays the build buffer: ladder_build_segments writes rows, and once a
-- block has ended (plus settle_delay) ladder_pack_segments() moves it into
-- one packed row. A rebuild (late data) deletes both forms of its blocks and
-- writes rows again, which the next round re-packs. Every reader goes through
-- segments_of(), which returns the rows of both forms (functions/segments.sql;
-- docs/contraction.md).

ALTER TABLE ladder_levels ADD COLUMN packed boolean NOT NULL DEFAULT false;
-- Levels whose blocks span a day or more pay for it (docs/storage.md).
UPDATE ladder_levels SET packed = true WHERE max_span >= interval '1 day';

-- Element i of every array is one segment, in start order: start_off and dur
-- in µs from block_start and from its own start; the rest as in segments.
CREATE TABLE segments_packed (
    target_id   bigint      NOT NULL,
    level       smallint    NOT NULL,
    block_start timestamptz NOT NULL,
    n           integer     NOT NULL CHECK (n > 0),  -- segments
    pings       integer     NOT NULL,                -- sum of count
    last_end    timestamptz NOT NULL,                -- retention drops the block after this
    start_off   bigint[]    NOT NULL,
    dur         bigint[]    NOT NULL,
    count       integer[]   NOT NULL,
    lost        integer[]   NOT NULL,
    min_us      integer[]   NOT NULL,
    max_us      integer[]   NOT NULL,
    sum_us      bigint[]    NOT NULL,
    sumsq_us    numeric[]   NOT NULL,
    hops        smallint[]  NOT NULL,
    ttl         smallint[]  NOT NULL,
    PRIMARY KEY (target_id, level, block_start)
) PARTITION BY LIST (level);
