-- The ladder's jobs. Each takes the one ladder lock for its transaction, so
-- two runs at once (pg_cron overlap, a manual run) serialize and the second
-- finds nothing left to do. One round of everything: CALL ladder_run().

CREATE FUNCTION ladder_lock() RETURNS void
LANGUAGE sql AS $$
    SELECT pg_advisory_xact_lock(hashtext('pingtrack.ladder'))
$$;

-- Refuses a ladder the jobs cannot honour, creates missing level partitions.
CREATE FUNCTION ladder_prepare() RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    bad text;
BEGIN
    SELECT format('level %s', b.level) INTO bad
    FROM ladder_levels b
    LEFT JOIN ladder_levels a ON a.level = b.level - 1
    WHERE b.level > 1 AND (a.level IS NULL
        OR extract(epoch FROM b.max_span)::bigint % extract(epoch FROM a.max_span)::bigint <> 0)
    LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'ladder_levels: % must follow the level below it and its max_span must be a multiple of that level''s', bad;
    END IF;
    PERFORM ensure_segment_partitions();
END;
$$;

-- Rebuilds the segments of one level for one target in [p_from, p_to), which
-- must be whole blocks of that level: level 1 from raw pings, level L from
-- level L-1. The rule is shared/segments.py's, step for step.
CREATE FUNCTION ladder_build_segments(p_level smallint, p_target bigint,
                                      p_from timestamptz, p_to timestamptz)
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    lv ladder_levels;
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
        IF have AND blk = c_blk AND (r.lost > 0) = (c_lost > 0)
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

-- Rebuilds one target's summary of one hour from its raw pings.
CREATE FUNCTION ladder_build_hourly(p_target bigint, p_hour timestamptz) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    made integer;
BEGIN
    DELETE FROM hourly_summaries WHERE target_id = p_target AND hour = p_hour;
    INSERT INTO hourly_summaries
    WITH p AS (
        SELECT ts, rtt_us, hops,
               rtt_us IS NULL AND (lag(ts) OVER w IS NULL OR lag(rtt_us) OVER w IS NOT NULL)
                   AS starts_loss_run
        FROM raw_pings(p_target, p_hour, p_hour + interval '1 hour')
        WINDOW w AS (ORDER BY ts)
    ), a AS (
        SELECT rtt_us, hops,
               abs(rtt_us - lag(rtt_us) OVER w) AS step,
               (lag(hops) OVER w IS NOT NULL AND hops IS DISTINCT FROM lag(hops) OVER w) AS hop_change
        FROM p WHERE rtt_us IS NOT NULL
        WINDOW w AS (ORDER BY ts)
    ), pa AS (
        SELECT count(*)::integer AS count,
               count(*) FILTER (WHERE rtt_us IS NULL)::integer AS lost,
               count(*) FILTER (WHERE starts_loss_run)::integer AS loss_runs
        FROM p
    ), aa AS (
        SELECT min(rtt_us) AS min_us, max(rtt_us) AS max_us,
               coalesce(sum(rtt_us), 0)::bigint AS sum_us,
               coalesce(sum(rtt_us::numeric * rtt_us), 0) AS sumsq_us,
               avg(rtt_us)::double precision AS mean_us,
               stddev_pop(rtt_us)::double precision AS stddev_us,
               percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY rtt_us) AS pct,
               avg(step)::double precision AS jitter_us,
               min(hops) AS hops_min, max(hops) AS hops_max,
               count(*) FILTER (WHERE hop_change)::integer AS hop_changes
        FROM a
    )
    SELECT p_target, p_hour, pa.count, pa.lost, aa.min_us, aa.max_us, aa.sum_us, aa.sumsq_us,
           aa.mean_us, aa.stddev_us, aa.pct[1], aa.pct[2], aa.pct[3], aa.jitter_us,
           aa.hops_min, aa.hops_max, aa.hop_changes, pa.loss_runs
    FROM pa, aa
    WHERE pa.count > 0;
    GET DIAGNOSTICS made = ROW_COUNT;
    RETURN made;
END;
$$;

-- Rolls up settled dirty hours: level 1 and hourly from raw, then each level
-- from the one below, block by block. Returns the number of (target, hour)
-- blocks taken (0: nothing to do). Idempotent: a block is deleted and rebuilt.
CREATE FUNCTION ladder_rollup(p_max_blocks integer DEFAULT NULL) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    cfg ladder_settings;
    lv ladder_levels;
    targets bigint[];
    hours timestamptz[];
    b record;
BEGIN
    PERFORM ladder_lock();
    PERFORM ladder_prepare();
    SELECT * INTO STRICT cfg FROM ladder_settings;
    -- Take the marks first: pings committed after this get a fresh mark and
    -- are rolled up next time; pings committed before are read below.
    WITH picked AS (
        SELECT target_id, hour FROM ladder_dirty
        WHERE hour + interval '1 hour' <= now() - cfg.settle_delay
        ORDER BY hour, target_id
        LIMIT coalesce(p_max_blocks, cfg.rollup_batch)
    ), taken AS (
        DELETE FROM ladder_dirty d USING picked p
        WHERE d.target_id = p.target_id AND d.hour = p.hour
        RETURNING d.target_id, d.hour
    )
    SELECT array_agg(target_id), array_agg(hour) INTO targets, hours
    FROM taken
    -- A block whose raw has expired is not rebuilt from what little is left.
    WHERE hour + interval '1 hour' > now() - cfg.raw_retention;
    IF targets IS NULL THEN
        RETURN 0;
    END IF;

    FOR b IN SELECT * FROM unnest(targets, hours) AS t(target_id, hour) LOOP
        PERFORM ladder_build_hourly(b.target_id, b.hour);
    END LOOP;
    FOR lv IN SELECT * FROM ladder_levels ORDER BY level LOOP
        FOR b IN
            SELECT DISTINCT t.target_id,
                   date_bin(lv.max_span, t.hour, timestamptz '2000-01-01 00:00:00+00') AS blk
            FROM unnest(targets, hours) AS t(target_id, hour)
        LOOP
            PERFORM ladder_build_segments(lv.level, b.target_id, b.blk, b.blk + lv.max_span);
        END LOOP;
    END LOOP;
    RETURN cardinality(targets);
END;
$$;

-- Daily partitions of pings as (partition, day), oldest first.
CREATE FUNCTION ladder_ping_partitions()
RETURNS TABLE (part regclass, day date)
LANGUAGE sql STABLE AS $$
    SELECT c.oid::regclass, to_date(substring(c.relname FROM 7), 'YYYYMMDD')
    FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = 'pings'::regclass AND c.relname ~ '^pings_[0-9]{8}$'
    ORDER BY 2
$$;

-- Packs up to p_max_days settled daily partitions that still hold rows.
-- Returns the number of pings moved to the packed form.
CREATE FUNCTION ladder_pack(p_max_days integer DEFAULT 1) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    cfg ladder_settings;
    p record;
    moved bigint := 0;
    days integer := 0;
    has_rows boolean;
BEGIN
    PERFORM ladder_lock();
    SELECT * INTO STRICT cfg FROM ladder_settings;
    FOR p IN SELECT * FROM ladder_ping_partitions() LOOP
        EXIT WHEN days >= p_max_days;
        CONTINUE WHEN (p.day + 1)::timestamp AT TIME ZONE 'UTC' + cfg.pack_after > now();
        EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s)', p.part) INTO has_rows;
        CONTINUE WHEN NOT has_rows;
        moved := moved + ladder_pack_partition(p.part);
        days := days + 1;
    END LOOP;
    RETURN moved;
END;
$$;

-- Creates daily partitions from yesterday to partition_days_ahead ahead.
CREATE FUNCTION ladder_partitions() RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    today date := (now() AT TIME ZONE 'UTC')::date;
    ahead integer;
BEGIN
    SELECT partition_days_ahead INTO STRICT ahead FROM ladder_settings;
    RETURN ensure_ping_partitions(today - 1, today + ahead);
END;
$$;

-- Drops what outlived its retention, and nothing younger: row-form
-- partitions and packed blocks whose whole span expired, segments whose last
-- ping expired, hourly summaries whose hour expired. Returns rows + partitions removed.
CREATE FUNCTION ladder_retention() RETURNS bigint
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
    END LOOP;
    DELETE FROM hourly_summaries WHERE hour + interval '1 hour' <= now() - cfg.hourly_retention;
    GET DIAGNOSTICS n = ROW_COUNT;
    removed := removed + n;
    RETURN removed;
END;
$$;

-- One round of every job, committing after each step so a long catch-up
-- keeps its progress. This is the command pg_cron runs every minute.
CREATE PROCEDURE ladder_run()
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ladder_partitions();
    COMMIT;
    WHILE ladder_rollup() > 0 LOOP
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
