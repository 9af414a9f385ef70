-- Segments never span a gap: a paused target or a monitoring outage stays a
-- hole at every level. A segment ends when the next ping comes more than
-- max(gap_floor, gap_factor x the target's interval) after its last one
-- (shared/segments.py max_gap_us; docs/contraction.md).
ALTER TABLE ladder_settings
    ADD COLUMN gap_floor  interval NOT NULL DEFAULT interval '3 seconds'
        CHECK (gap_floor > interval '0'),
    ADD COLUMN gap_factor integer  NOT NULL DEFAULT 3 CHECK (gap_factor >= 1);

-- The longest gap a segment of this target may bridge. The interval is the
-- target's current one; a target the database does not know gets the floor.
CREATE FUNCTION ladder_max_gap(p_target bigint) RETURNS interval
LANGUAGE sql STABLE AS $$
    SELECT greatest(s.gap_floor,
                    coalesce(s.gap_factor * t.interval_ms, 0) * interval '1 millisecond')
    FROM ladder_settings s LEFT JOIN targets t ON t.id = p_target
$$;

-- Same rule as migration 0005, plus the gap test.
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

    IF p_level = 1 THEN
        src := $q$SELECT ts AS start_ts, ts AS end_ts, 1 AS count,
                         (rtt_us IS NULL)::integer AS lost, rtt_us AS min_us, rtt_us AS max_us,
                         coalesce(rtt_us, 0)::bigint AS sum_us,
                         coalesce(rtt_us::bigint * rtt_us, 0)::numeric AS sumsq_us, hops, ttl
                  FROM raw_pings($1, $2, $3)$q$;
    ELSE
        src := format($q$SELECT start_ts, end_ts, count, lost, min_us, max_us, sum_us, sumsq_us,
                                hops, ttl
                         FROM segments
                         WHERE target_id = $1 AND level = %s AND start_ts >= $2 AND start_ts < $3
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
