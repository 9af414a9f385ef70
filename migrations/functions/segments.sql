-- Segments: how a level is built from the one below it, packed once its days
-- have settled, and read back in either form. docs/contraction.md.

-- The packing unit of a level: its block, at least a day.
CREATE OR REPLACE FUNCTION ladder_pack_span(p_max_span interval) RETURNS interval
LANGUAGE sql IMMUTABLE AS $$
    SELECT greatest(p_max_span, interval '1 day')
$$;

-- The longest gap a segment of this target may bridge:
-- max(gap_floor, gap_factor x the target's interval) (shared/segments.py
-- max_gap_us). The interval is the target's current one; a target the
-- database does not know gets the floor.
CREATE OR REPLACE FUNCTION ladder_max_gap(p_target bigint) RETURNS interval
LANGUAGE sql STABLE AS $$
    SELECT greatest(s.gap_floor,
                    coalesce(s.gap_factor * t.interval_ms, 0) * interval '1 millisecond')
    FROM ladder_settings s LEFT JOIN targets t ON t.id = p_target
$$;

-- The segments of one target and level starting in [p_from, p_to), from both
-- forms, in no particular order (ORDER BY start_ts where order matters).
-- Inlined by the planner, so callers' filters and grouping reach both scans.
CREATE OR REPLACE FUNCTION segments_of(p_target bigint, p_level integer,
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
      AND k.block_start > p_from - (SELECT ladder_pack_span(l.max_span) FROM ladder_levels l
                                         WHERE l.level = p_level)
      AND k.block_start < p_to
      AND u.start_ts >= p_from AND u.start_ts < p_to
$$;

-- The same, but only the columns /stats reduces: segments_of() unnests all
-- ten arrays of a packed block (each a TOAST value of its own, sumsq_us
-- numeric), /stats needs five. SQL, so it is inlined like segments_of() and
-- the callers' filters reach both scans.
CREATE OR REPLACE FUNCTION segment_figures_of(p_target bigint, p_level integer,
                                              p_from timestamptz, p_to timestamptz)
RETURNS TABLE (start_ts timestamptz, count integer, lost integer, sum_us bigint,
               hops smallint)
LANGUAGE sql STABLE AS $$
    SELECT s.start_ts, s.count, s.lost, s.sum_us, s.hops
    FROM segments s
    WHERE s.target_id = p_target AND s.level = p_level
      AND s.start_ts >= p_from AND s.start_ts < p_to
    UNION ALL
    SELECT u.start_ts, u.count, u.lost, u.sum_us, u.hops
    FROM segments_packed k
    CROSS JOIN LATERAL (
        SELECT k.block_start + a.off * interval '1 microsecond' AS start_ts, a.*
        FROM unnest(k.start_off, k.count, k.lost, k.sum_us, k.hops)
             AS a(off, count, lost, sum_us, hops)
    ) u
    WHERE k.target_id = p_target AND k.level = p_level
      AND k.block_start > p_from - (SELECT ladder_pack_span(l.max_span) FROM ladder_levels l
                                         WHERE l.level = p_level)
      AND k.block_start < p_to
      AND u.start_ts >= p_from AND u.start_ts < p_to
$$;

-- Rebuilds the segments of one level for one target in [p_from, p_to), which
-- must be whole blocks of that level: level 1 from raw pings, level L from
-- level L-1 (through segments_of()). The rule is shared/segments.py's, step
-- for step: a segment never crosses a block, a gap longer than
-- ladder_max_gap(), a change between lost and answered, of hops or of TTL,
-- and keeps its RTT envelope within the level's tolerance. Packed units
-- overlapping the range are unpacked first (less the range itself, so the
-- unit's rows are whole again for the next packing), then the range's rows
-- are deleted and rebuilt.
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
    -- Packed days overlapping the range go back to rows, less the range
    -- itself, so that the day's rows are whole again for the next packing.
    WITH unpacked AS (
        DELETE FROM segments_packed k
        WHERE k.target_id = p_target AND k.level = p_level
          AND k.block_start > p_from - ladder_pack_span(lv.max_span) AND k.block_start < p_to
        RETURNING k.*
    )
    INSERT INTO segments
    SELECT k.target_id, k.level, u.start_ts, u.start_ts + u.dur * interval '1 microsecond',
           u.count, u.lost, u.min_us, u.max_us, u.sum_us, u.sumsq_us, u.hops, u.ttl
    FROM unpacked k
    CROSS JOIN LATERAL (
        SELECT k.block_start + a.off * interval '1 microsecond' AS start_ts, a.*
        FROM unnest(k.start_off, k.dur, k.count, k.lost, k.min_us, k.max_us, k.sum_us,
                    k.sumsq_us, k.hops, k.ttl)
             AS a(off, dur, count, lost, min_us, max_us, sum_us, sumsq_us, hops, ttl)
    ) u
    WHERE u.start_ts < p_from OR u.start_ts >= p_to;
    DELETE FROM segments
    WHERE target_id = p_target AND level = p_level AND start_ts >= p_from AND start_ts < p_to;

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
        blk := date_bin(lv.max_span, r.start_ts, ladder_origin());
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

-- Packs up to p_max_blocks ended units (ladder_pack_span()) of the packed
-- levels, of one target or of all when p_target is NULL: their rows become
-- one packed row each. A unit's rows are always the whole unit (a rebuild
-- unpacks the rest of it), so they replace any packed row of the same unit.
-- Returns the number of units packed; 0 when nothing is left.
CREATE OR REPLACE FUNCTION ladder_pack_segments(p_max_blocks integer DEFAULT 5000,
                                                p_target bigint DEFAULT NULL) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    cfg ladder_settings;
    lv ladder_levels;
    span interval;
    lim timestamptz;
    n integer;
    done integer := 0;
BEGIN
    PERFORM ladder_lock();
    PERFORM ladder_prepare();
    SELECT * INTO STRICT cfg FROM ladder_settings;
    FOR lv IN SELECT * FROM ladder_levels WHERE packed ORDER BY level LOOP
        EXIT WHEN done >= p_max_blocks;
        span := ladder_pack_span(lv.max_span);
        -- Days (blocks) before this one ended settle_delay ago or more, and
        -- with them every build block in them.
        lim := date_bin(span, now() - cfg.settle_delay, ladder_origin());
        CREATE TEMP TABLE ladder_segpack_blocks ON COMMIT DROP AS
        SELECT DISTINCT s.target_id,
               date_bin(span, s.start_ts, ladder_origin()) AS blk
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
                  AND date_bin(span, s.start_ts, ladder_origin()) = b.blk
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
