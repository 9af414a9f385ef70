-- The ladder's jobs. Each takes the one ladder lock for its transaction, so
-- two runs at once (pg_cron overlap, a manual run) serialize and the second
-- finds nothing left to do; `pingtrack migrate` holds the same lock while it
-- replaces these functions. One round of everything: CALL ladder_run(), which
-- is what pg_cron runs every minute (shared/ladder.py schedules it).

CREATE OR REPLACE FUNCTION ladder_lock() RETURNS void
LANGUAGE sql AS $$
    SELECT pg_advisory_xact_lock(hashtext('pingtrack.ladder'))
$$;

-- Refuses a ladder the jobs cannot honour, creates missing level partitions.
CREATE OR REPLACE FUNCTION ladder_prepare() RETURNS void
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

-- Rebuilds one target's summary of one hour from its raw pings.
CREATE OR REPLACE FUNCTION ladder_build_hourly(p_target bigint, p_hour timestamptz) RETURNS integer
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
-- marks taken (0: nothing to do). Idempotent: a block is deleted and rebuilt.
CREATE OR REPLACE FUNCTION ladder_rollup(p_max_blocks integer DEFAULT NULL) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    cfg ladder_settings;
    lv ladder_levels;
    targets bigint[];
    hours timestamptz[];
    taken integer;
    b record;
    discarded bigint;
    discarded_hour timestamptz;
BEGIN
    PERFORM ladder_lock();
    PERFORM ladder_prepare();
    SELECT * INTO STRICT cfg FROM ladder_settings;
    -- Take the marks first, and only those no writer holds. A writer holds the
    -- marks of the blocks it wrote from its insert to its commit
    -- (ladder_mark_dirty), so every writer behind a mark taken here has
    -- committed, and the reads below (each statement a later snapshot) see all
    -- its pings. A held mark is left to a later round; a writer that comes to a
    -- mark taken here waits for this transaction, then marks the block afresh.
    SELECT array_agg(target_id), array_agg(hour) INTO targets, hours
    FROM (
        SELECT target_id, hour FROM ladder_dirty
        WHERE hour + interval '1 hour' <= now() - cfg.settle_delay
        ORDER BY hour, target_id
        LIMIT coalesce(p_max_blocks, cfg.rollup_batch)
        FOR UPDATE SKIP LOCKED
    ) picked;
    taken := coalesce(cardinality(targets), 0);
    IF taken = 0 THEN
        RETURN 0;
    END IF;
    DELETE FROM ladder_dirty d
    USING unnest(targets, hours) AS t(target_id, hour)
    WHERE d.target_id = t.target_id AND d.hour = t.hour;
    -- A block whose raw has expired is not rebuilt from what little is left:
    -- its mark is discarded, and counted (ladder_state, functions/ladder_health.sql).
    SELECT array_agg(target_id) FILTER (WHERE live), array_agg(hour) FILTER (WHERE live),
           count(*) FILTER (WHERE NOT live), max(hour) FILTER (WHERE NOT live)
    INTO targets, hours, discarded, discarded_hour
    FROM (SELECT *, hour + interval '1 hour' > now() - cfg.raw_retention AS live
          FROM unnest(targets, hours) AS t(target_id, hour)) t;
    PERFORM ladder_note_discarded(discarded, discarded_hour);
    IF targets IS NULL THEN
        RETURN taken;
    END IF;

    FOR b IN SELECT * FROM unnest(targets, hours) AS t(target_id, hour) LOOP
        PERFORM ladder_build_hourly(b.target_id, b.hour);
    END LOOP;
    FOR lv IN SELECT * FROM ladder_levels ORDER BY level LOOP
        FOR b IN
            SELECT DISTINCT t.target_id,
                   date_bin(lv.max_span, t.hour, ladder_origin()) AS blk
            FROM unnest(targets, hours) AS t(target_id, hour)
        LOOP
            PERFORM ladder_build_segments(lv.level, b.target_id, b.blk, b.blk + lv.max_span);
        END LOOP;
    END LOOP;
    RETURN taken;
END;
$$;

-- Daily partitions of pings as (partition, day), oldest first.
CREATE OR REPLACE FUNCTION ladder_ping_partitions()
RETURNS TABLE (part regclass, day date)
LANGUAGE sql STABLE AS $$
    SELECT c.oid::regclass, to_date(substring(c.relname FROM 7), 'YYYYMMDD')
    FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = 'pings'::regclass AND c.relname ~ '^pings_[0-9]{8}$'
    ORDER BY 2
$$;

-- Packs up to p_max_days settled daily partitions that still hold rows.
-- Returns the number of pings moved to the packed form.
CREATE OR REPLACE FUNCTION ladder_pack(p_max_days integer DEFAULT 1) RETURNS bigint
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
CREATE OR REPLACE FUNCTION ladder_partitions() RETURNS integer
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
-- partitions and packed blocks whose whole span expired, segments and packed
-- segment blocks whose last ping expired (so a packed block goes up to one
-- block later than its rows would), hourly summaries whose hour expired.
-- Returns rows + partitions removed.
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

-- Probe details live as long as raw pings do: drops their expired daily partitions.
CREATE OR REPLACE FUNCTION probe_details_retention() RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    keep interval;
    p record;
    removed integer := 0;
BEGIN
    PERFORM ladder_lock();
    SELECT raw_retention INTO STRICT keep FROM ladder_settings;
    FOR p IN
        SELECT c.oid::regclass AS part, to_date(substring(c.relname FROM 15), 'YYYYMMDD') AS day
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'probe_details'::regclass AND c.relname ~ '^probe_details_[0-9]{8}$'
        ORDER BY 2
    LOOP
        EXIT WHEN (p.day + 1)::timestamp AT TIME ZONE 'UTC' > now() - keep;
        EXECUTE format('DROP TABLE %s', p.part);
        removed := removed + 1;
    END LOOP;
    RETURN removed;
END;
$$;

-- One round of every job, committing after each step so a long catch-up
-- keeps its progress. Every time-partitioned table's retention is a step here
-- (tests/test_partition_retention.py). Each step runs through ladder_step(),
-- and the round is recorded in ladder_state (functions/ladder_health.sql):
-- a failing step is recorded and committed, then the round raises its error.
CREATE OR REPLACE PROCEDURE ladder_run()
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ladder_round_begin();
    COMMIT;
    PERFORM ladder_step('ladder_partitions');
    COMMIT;
    WHILE ladder_step('ladder_rollup') > 0 LOOP
        COMMIT;
    END LOOP;
    COMMIT;
    WHILE ladder_step('ladder_pack_segments') > 0 LOOP
        COMMIT;
    END LOOP;
    COMMIT;
    WHILE ladder_step('ladder_pack') > 0 LOOP
        COMMIT;
    END LOOP;
    COMMIT;
    PERFORM ladder_step('ladder_retention');
    COMMIT;
    PERFORM ladder_step('probe_details_retention');
    COMMIT;
    PERFORM ladder_round_end();
    COMMIT;
END;
$$;

-- Marks the (target, hour) blocks that received pings since they were last
-- rolled up (ladder_dirty), so on-time and late data take the same path and
-- the writer needs no change. The inserting transaction holds each of these
-- marks until it ends: a new one is invisible to others until then, and an
-- existing one is locked (DO UPDATE … WHERE false locks the row and writes
-- nothing). ladder_rollup() skips held marks, so it never takes the mark of a
-- block and reads the block while pings for it are still uncommitted.
CREATE OR REPLACE FUNCTION ladder_mark_dirty() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- Sorted so that concurrent writers lock marks in one order (no deadlock).
    INSERT INTO ladder_dirty (target_id, hour)
    SELECT DISTINCT target_id, date_bin(interval '1 hour', ts, ladder_origin())
    FROM new_pings
    ORDER BY 1, 2
    ON CONFLICT (target_id, hour) DO UPDATE SET hour = excluded.hour WHERE false;
    RETURN NULL;
END;
$$;

CREATE OR REPLACE TRIGGER pings_mark_dirty
    AFTER INSERT ON pings
    REFERENCING NEW TABLE AS new_pings
    FOR EACH STATEMENT EXECUTE FUNCTION ladder_mark_dirty();
