-- Partitions created ahead of the data: daily ones of the time-partitioned
-- tables, one per level of the segment tables. `pingtrack migrate` and every
-- ladder round call these; both are safe to call concurrently and repeatedly.

-- Creates the daily partitions of pings and probe_details covering
-- [first_day, last_day]. Returns how many it created.
CREATE OR REPLACE FUNCTION ensure_ping_partitions(first_day date, last_day date)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    day date;
    created integer := 0;
    parent text;
    part text;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('pingtrack.ping_partitions'));
    FOR day IN SELECT generate_series(first_day, last_day, interval '1 day')::date LOOP
        FOREACH parent IN ARRAY ARRAY['pings', 'probe_details'] LOOP
            part := parent || '_' || to_char(day, 'YYYYMMDD');
            IF to_regclass(part) IS NULL THEN
                EXECUTE format(
                    'CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                    part, parent, day::text || ' 00:00:00+00', (day + 1)::text || ' 00:00:00+00');
                created := created + 1;
            END IF;
        END LOOP;
    END LOOP;
    RETURN created;
END;
$$;

-- One partition of each segment form per configured level. Packed rows are
-- compressed from 128 B on (the default waits for 2 kB).
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

-- A numbered migration may have added a level (or this file the packed form).
SELECT ensure_segment_partitions();
