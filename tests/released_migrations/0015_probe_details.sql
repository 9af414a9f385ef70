-- What tcp and http probes see beyond the round trip, one row per result that
-- has something to say (a failure reason, an HTTP status), keyed like its
-- ping. Daily partitions like pings, created with them, dropped with them.
CREATE TABLE probe_details (
    target_id       bigint      NOT NULL,
    ts              timestamptz NOT NULL,    -- the ping's send time
    status          smallint,                -- HTTP status code
    ttfb_us         integer,                 -- time to first byte
    cert_expires_at timestamptz,             -- https: the certificate's notAfter
    error           text,                    -- timeout, refused, tls, status, body, ...
    PRIMARY KEY (target_id, ts)
) PARTITION BY RANGE (ts);

-- Now also creates the probe_details partition of each day.
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

-- Probe details live as long as raw pings do.
CREATE FUNCTION probe_details_retention() RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    keep interval;
    p record;
    removed integer := 0;
BEGIN
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

CREATE OR REPLACE PROCEDURE ladder_run()
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
    PERFORM probe_details_retention();
    COMMIT;
END;
$$;
