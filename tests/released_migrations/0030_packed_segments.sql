-- Long-lived segment levels packed: one row per target and block of the
-- level (a day for levels 2 and 3) instead of one row per segment. The row
-- form stays the build buffer: ladder_build_segments writes rows, and once a
-- block has ended (plus settle_delay) ladder_pack_segments() moves it into
-- one packed row. A rebuild (late data) deletes both forms of its blocks and
-- writes rows again, which the next round re-packs. Every reader goes through
-- segments_of(), which returns the rows of both forms. docs/contraction.md.

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

-- One partition of each form per configured level; safe to call repeatedly.
-- Packed rows are compressed from 128 B on (the default waits for 2 kB).
CREATE OR REPLACE FUNCTION ensure_segment_partitions() RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    lvl smallint;
    created integer := 0;
BEGIN
    FOR lvl IN SELECT level FROM ladder_levels ORDER BY level LOOP
        IF to_regclass('segments_l' || lvl) IS NULL THEN
            EXECUTE format('CREATE TABLE %I PARTITION OF segments FOR VALUES IN (%s)',
                           'segments_l' || lvl, lvl);
            created := created + 1;
        END IF;
        IF to_regclass('segments_packed_l' || lvl) IS NULL THEN
            EXECUTE format('CREATE TABLE %I PARTITION OF segments_packed FOR VALUES IN (%s)'
                           ' WITH (toast_tuple_target = 128)',
                           'segments_packed_l' || lvl, lvl);
            created := created + 1;
        END IF;
    END LOOP;
    RETURN created;
END;
$$;
SELECT ensure_segment_partitions();

-- The segments of one target and level starting in [p_from, p_to), from both
-- forms, in no particular order (ORDER BY start_ts where order matters).
-- Inlined by the planner, so callers' filters and grouping reach both scans.
CREATE FUNCTION segments_of(p_target bigint, p_level integer,
                            p_from timestamptz, p_to timestamptz)
RETURNS SETOF segments
LANGUAGE sql STABLE AS $$
    SELECT s.target_id, s.level, s.start_ts, s.end_ts, s.count, s.lost, s.min_us, s.max_us,
           s.sum_us, s.sumsq_us, s.hops, s.ttl
    FROM segments s
    WHERE s.target_id = p_target AND s.level = p_level
      AND s.start_ts >= p_from AND s.start_ts < p_to
    UNION ALL
    SELECT k.target_id, k.level, u.start_ts, u.start_ts + u.dur * interval '1 microsecond',
           u.count, u.lost, u.min_us, u.max_us, u.sum_us, u.sumsq_us, u.hops, u.ttl
    FROM segments_packed k
    CROSS JOIN LATERAL (
        SELECT k.block_start + a.off * interval '1 microsecond' AS start_ts, a.*
        FROM unnest(k.start_off, k.dur, k.count, k.lost, k.min_us, k.max_us, k.sum_us,
                    k.sumsq_us, k.hops, k.ttl)
             AS a(off, dur, count, lost, min_us, max_us, sum_us, sumsq_us, hops, ttl)
    ) u
    WHERE k.target_id = p_target AND k.level = p_level
      AND k.block_start > p_from - (SELECT l.max_span FROM ladder_levels l WHERE l.level = p_level)
      AND k.block_start < p_to
      AND u.start_ts >= p_from AND u.start_ts < p_to
$$;

-- Packs up to p_max_blocks ended blocks of the packed levels (of one target,
-- or of all when p_target is NULL): their rows become one packed row each.
-- A block's rows are always the whole block (a rebuild writes every segment
-- of it), so they replace any packed row of the same block. Returns the number
-- of blocks packed; 0 when nothing is left.
CREATE FUNCTION ladder_pack_segments(p_max_blocks integer DEFAULT 5000,
                                     p_target bigint DEFAULT NULL) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    cfg ladder_settings;
    lv ladder_levels;
    lim timestamptz;
    n integer;
    done integer := 0;
BEGIN
    PERFORM ladder_lock();
    PERFORM ladder_prepare();
    SELECT * INTO STRICT cfg FROM ladder_settings;
    FOR lv IN SELECT * FROM ladder_levels WHERE packed ORDER BY level LOOP
        EXIT WHEN done >= p_max_blocks;
        -- Blocks before this one ended settle_delay ago or more.
        lim := date_bin(lv.max_span, now() - cfg.settle_delay, timestamptz '2000-01-01 00:00:00+00');
        CREATE TEMP TABLE ladder_segpack_blocks ON COMMIT DROP AS
        SELECT DISTINCT s.target_id,
               date_bin(lv.max_span, s.start_ts, timestamptz '2000-01-01 00:00:00+00') AS blk
        FROM segments s
        WHERE s.level = lv.level AND s.start_ts < lim
          AND (p_target IS NULL OR s.target_id = p_target)
        LIMIT p_max_blocks - done;
        GET DIAGNOSTICS n = ROW_COUNT;
        IF n > 0 THEN
            DELETE FROM segments_packed k USING ladder_segpack_blocks b
            WHERE k.level = lv.level AND k.target_id = b.target_id AND k.block_start = b.blk;
            WITH moved AS (
                DELETE FROM segments s USING ladder_segpack_blocks b
                WHERE s.level = lv.level AND s.target_id = b.target_id
                  AND date_bin(lv.max_span, s.start_ts, timestamptz '2000-01-01 00:00:00+00') = b.blk
                RETURNING s.*, b.blk
            )
            INSERT INTO segments_packed
            SELECT target_id, lv.level, blk, count(*)::integer, sum(count)::integer, max(end_ts),
                   array_agg((extract(epoch FROM start_ts - blk) * 1000000)::bigint ORDER BY start_ts),
                   array_agg((extract(epoch FROM end_ts - start_ts) * 1000000)::bigint ORDER BY start_ts),
                   array_agg(count ORDER BY start_ts), array_agg(lost ORDER BY start_ts),
                   array_agg(min_us ORDER BY start_ts), array_agg(max_us ORDER BY start_ts),
                   array_agg(sum_us ORDER BY start_ts), array_agg(sumsq_us ORDER BY start_ts),
                   array_agg(hops ORDER BY start_ts), array_agg(ttl ORDER BY start_ts)
            FROM moved
            GROUP BY target_id, blk;
        END IF;
        DROP TABLE ladder_segpack_blocks;
        done := done + n;
    END LOOP;
    RETURN done;
END;
$$;

-- Same rule as migration 0006; reads the level below through segments_of()
-- and clears both forms of the blocks it rebuilds.
CREATE OR REPLACE FUNCTION ladder_build_segments(p_level smallint, p_target bigint,
                                      p_from timestamptz, p_to timestamptz)
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    lv ladder_levels;
    gap interval := ladder_max_gap(p_target);
    src text;
    r record;
    made integer := 0;
    have boolean := false;
    blk timestamptz;
    lo integer;
    hi integer;
    c_blk timestamptz;
    c_start timestamptz;
    c_end timestamptz;
    c_count integer;
    c_lost integer;
    c_min integer;
    c_max integer;
    c_sum bigint;
    c_sumsq numeric;
    c_hops smallint;
    c_ttl smallint;
BEGIN
    SELECT * INTO STRICT lv FROM ladder_levels WHERE level = p_level;
    DELETE FROM segments
    WHERE target_id = p_target AND level = p_level AND start_ts >= p_from AND start_ts < p_to;
    DELETE FROM segments_packed
    WHERE target_id = p_target AND level = p_level
      AND block_start >= date_bin(lv.max_span, p_from, timestamptz '2000-01-01 00:00:00+00')
      AND block_start < p_to;

    IF p_level = 1 THEN
        src := $q$SELECT ts AS start_ts, ts AS end_ts, 1 AS count,
                         (rtt_us IS NULL)::integer AS lost, rtt_us AS min_us, rtt_us AS max_us,
                         coalesce(rtt_us, 0)::bigint AS sum_us,
                         coalesce(rtt_us::bigint * rtt_us, 0)::numeric AS sumsq_us, hops, ttl
                  FROM raw_pings($1, $2, $3)$q$;
    ELSE
        src := format($q$SELECT start_ts, end_ts, count, lost, min_us, max_us, sum_us, sumsq_us,
                                hops, ttl
                         FROM segments_of($1, %s, $2, $3)
                         ORDER BY start_ts$q$, p_level - 1);
    END IF;

    FOR r IN EXECUTE src USING p_target, p_from, p_to LOOP
        blk := date_bin(lv.max_span, r.start_ts, timestamptz '2000-01-01 00:00:00+00');
        IF have AND blk = c_blk AND r.start_ts - c_end <= gap AND (r.lost > 0) = (c_lost > 0)
           AND r.hops IS NOT DISTINCT FROM c_hops AND r.ttl IS NOT DISTINCT FROM c_ttl THEN
            IF c_lost > 0 THEN
                c_end := r.end_ts;
                c_count := c_count + r.count;
                c_lost := c_lost + r.lost;
                CONTINUE;
            END IF;
            lo := least(c_min, r.min_us);
            hi := greatest(c_max, r.max_us);
            IF hi - lo <= lv.abs_tolerance_us
               OR (hi - lo)::numeric * (c_count + r.count) <= lv.rel_tolerance * (c_sum + r.sum_us) THEN
                c_end := r.end_ts;
                c_count := c_count + r.count;
                c_min := lo;
                c_max := hi;
                c_sum := c_sum + r.sum_us;
                c_sumsq := c_sumsq + r.sumsq_us;
                CONTINUE;
            END IF;
        END IF;
        IF have THEN
            INSERT INTO segments VALUES (p_target, p_level, c_start, c_end, c_count, c_lost,
                                         c_min, c_max, c_sum, c_sumsq, c_hops, c_ttl);
            made := made + 1;
        END IF;
        have := true;
        c_blk := blk;
        c_start := r.start_ts;
        c_end := r.end_ts;
        c_count := r.count;
        c_lost := r.lost;
        c_min := r.min_us;
        c_max := r.max_us;
        c_sum := r.sum_us;
        c_sumsq := r.sumsq_us;
        c_hops := r.hops;
        c_ttl := r.ttl;
    END LOOP;
    IF have THEN
        INSERT INTO segments VALUES (p_target, p_level, c_start, c_end, c_count, c_lost,
                                     c_min, c_max, c_sum, c_sumsq, c_hops, c_ttl);
        made := made + 1;
    END IF;
    RETURN made;
END;
$$;

-- As migration 0005, plus packed segment blocks: a block goes once its last
-- segment expired (so up to one block later than the row form would).
CREATE OR REPLACE FUNCTION ladder_retention() RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    cfg ladder_settings;
    lv ladder_levels;
    p record;
    n bigint;
    removed bigint := 0;
BEGIN
    PERFORM ladder_lock();
    SELECT * INTO STRICT cfg FROM ladder_settings;
    FOR p IN SELECT * FROM ladder_ping_partitions() LOOP
        EXIT WHEN (p.day + 1)::timestamp AT TIME ZONE 'UTC' > now() - cfg.raw_retention;
        EXECUTE format('DROP TABLE %s', p.part);
        removed := removed + 1;
    END LOOP;
    DELETE FROM pings_packed WHERE block_start + interval '1 hour' <= now() - cfg.raw_retention;
    GET DIAGNOSTICS n = ROW_COUNT;
    removed := removed + n;
    FOR lv IN SELECT * FROM ladder_levels LOOP
        DELETE FROM segments WHERE level = lv.level AND end_ts < now() - lv.retention;
        GET DIAGNOSTICS n = ROW_COUNT;
        removed := removed + n;
        DELETE FROM segments_packed WHERE level = lv.level AND last_end < now() - lv.retention;
        GET DIAGNOSTICS n = ROW_COUNT;
        removed := removed + n;
    END LOOP;
    DELETE FROM hourly_summaries WHERE hour + interval '1 hour' <= now() - cfg.hourly_retention;
    GET DIAGNOSTICS n = ROW_COUNT;
    removed := removed + n;
    RETURN removed;
END;
$$;

-- As migration 0005, with the segment packing after the rollups.
CREATE OR REPLACE PROCEDURE ladder_run()
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ladder_partitions();
    COMMIT;
    WHILE ladder_rollup() > 0 LOOP
        COMMIT;
    END LOOP;
    COMMIT;
    WHILE ladder_pack_segments() > 0 LOOP
        COMMIT;
    END LOOP;
    COMMIT;
    WHILE ladder_pack() > 0 LOOP
        COMMIT;
    END LOOP;
    COMMIT;
    PERFORM ladder_retention();
    COMMIT;
END;
$$;
