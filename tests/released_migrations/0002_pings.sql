-- Raw pings, one row each, in daily partitions. target_id leads every key
-- so the table can later be distributed by target.
CREATE TABLE pings (
    target_id bigint      NOT NULL,
    ts        timestamptz NOT NULL,   -- send time, UTC, microseconds
    rtt_us    integer,                -- NULL: lost
    ttl       smallint,               -- reply TTL / hop limit as received
    hops      smallint,               -- guessed from ttl
    PRIMARY KEY (target_id, ts)
) PARTITION BY RANGE (ts);

-- Batch ids already stored: a batch delivered twice is written once.
CREATE TABLE ingested_batches (
    batch_id    uuid        PRIMARY KEY,
    rows        integer     NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ingested_batches_received_at ON ingested_batches (received_at);

-- Creates the daily partitions covering [first_day, last_day]; safe to run
-- concurrently and repeatedly. Returns how many it created.
CREATE FUNCTION ensure_ping_partitions(first_day date, last_day date)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    day date;
    created integer := 0;
    part text;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('pingtrack.ping_partitions'));
    FOR day IN SELECT generate_series(first_day, last_day, interval '1 day')::date LOOP
        part := 'pings_' || to_char(day, 'YYYYMMDD');
        IF to_regclass(part) IS NULL THEN
            EXECUTE format(
                'CREATE TABLE %I PARTITION OF pings FOR VALUES FROM (%L) TO (%L)',
                part, day::text || ' 00:00:00+00', (day + 1)::text || ' 00:00:00+00');
            created := created + 1;
        END IF;
    END LOOP;
    RETURN created;
END;
$$;
