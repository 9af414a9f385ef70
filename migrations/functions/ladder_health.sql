-- The ladder's record of itself (table ladder_state, migration 0033): when
-- rounds start, complete or fail, what was discarded, and how far behind each
-- tier is. /health and /metrics read it (api_service/ladder_health.py), so a
-- stopped or failing ladder is seen without pg_cron's tables.
--
-- A round (ladder_run(), functions/ladder.sql) commits after every step, and
-- a block that catches errors cannot commit; so each step runs through
-- ladder_step(), which catches its error, records it and returns NULL; the
-- round commits that record, and its next step (or ladder_round_end()) raises
-- the error, so pg_cron sees the round fail too. The round's own state lives
-- in two session settings, so that overlapping rounds (a manual one beside
-- pg_cron's) keep theirs apart.

-- Raises the error of the current round, if one of its steps failed.
CREATE OR REPLACE FUNCTION ladder_round_check() RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    failed text := current_setting('pingtrack.round_error', true);
BEGIN
    IF coalesce(failed, '') <> '' THEN
        RAISE EXCEPTION 'ladder round failed in %', failed;
    END IF;
END;
$$;

CREATE OR REPLACE FUNCTION ladder_round_begin() RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    started timestamptz := clock_timestamp();
BEGIN
    PERFORM set_config('pingtrack.round_error', '', false);
    PERFORM set_config('pingtrack.round_started', started::text, false);
    UPDATE ladder_state SET started_at = started;
END;
$$;

-- Runs one step (a function without arguments returning a count) and returns
-- its count; on error records it and returns NULL (the caller commits).
CREATE OR REPLACE FUNCTION ladder_step(p_step text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    done bigint;
    msg text;
    code text;
BEGIN
    PERFORM ladder_round_check();
    BEGIN
        EXECUTE format('SELECT %I()::bigint', p_step) INTO done;
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, code = RETURNED_SQLSTATE;
        msg := format('%s: %s (SQLSTATE %s)', p_step, msg, code);
        UPDATE ladder_state SET failed_at = clock_timestamp(), error = msg, failures = failures + 1;
        PERFORM set_config('pingtrack.round_error', msg, false);
        RETURN NULL;
    END;
    RETURN done;
END;
$$;

CREATE OR REPLACE FUNCTION ladder_round_end() RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    started timestamptz := nullif(current_setting('pingtrack.round_started', true), '');
    ended timestamptz := clock_timestamp();
BEGIN
    PERFORM ladder_round_check();
    UPDATE ladder_state SET finished_at = ended, duration = ended - started, rounds = rounds + 1;
END;
$$;

-- Counts dirty marks that ladder_rollup() dropped unbuilt because their
-- hour's raw pings had expired (`newest`: the newest such hour).
CREATE OR REPLACE FUNCTION ladder_note_discarded(n bigint, newest timestamptz) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(n, 0) = 0 THEN
        RETURN;
    END IF;
    UPDATE ladder_state
    SET discarded_marks = discarded_marks + n, discarded_at = now(),
        discarded_hour = greatest(discarded_hour, newest);
    RAISE LOG 'ladder: % dirty marks older than raw_retention discarded unsummarised (newest hour %)',
        n, newest;
END;
$$;

-- How far each tier has settled: every time before `covered_to` is in it
-- for good (barring later late data). Lag = now() - covered_to.
--   hourly: hours before the oldest one still marked dirty, at most up to the
--     last hour settled (settle_delay);
--   level_N: the same, down to the level's block (max_span): a block is final
--     once all its hours are;
--   raw_packed: days before the oldest day due for packing (pack_after) that
--     still holds rows, at most up to the last day due.
CREATE OR REPLACE FUNCTION ladder_lag()
RETURNS TABLE (tier text, covered_to timestamptz)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    origin constant timestamptz := ladder_origin();
    cfg ladder_settings;
    lv ladder_levels;
    p record;
    day_start timestamptz;
    rolled timestamptz;
    packed timestamptz;
BEGIN
    SELECT * INTO STRICT cfg FROM ladder_settings;
    SELECT least(min(d.hour), date_bin(interval '1 hour', now() - cfg.settle_delay, origin))
    INTO rolled FROM ladder_dirty d;
    tier := 'hourly';
    covered_to := rolled;
    RETURN NEXT;
    FOR lv IN SELECT * FROM ladder_levels ORDER BY level LOOP
        tier := format('level_%s', lv.level);
        covered_to := date_bin(lv.max_span, rolled, origin);
        RETURN NEXT;
    END LOOP;
    packed := date_bin(interval '1 day', now() - cfg.pack_after, origin);
    FOR p IN SELECT * FROM ladder_ping_partitions() LOOP
        day_start := p.day::timestamp AT TIME ZONE 'UTC';
        EXIT WHEN day_start >= packed;
        -- Through the parent: a partition dropped meanwhile is simply not there.
        IF EXISTS (SELECT 1 FROM pings WHERE ts >= day_start AND ts < day_start + interval '1 day') THEN
            packed := day_start;
            EXIT;
        END IF;
    END LOOP;
    tier := 'raw_packed';
    covered_to := packed;
    RETURN NEXT;
END;
$$;
