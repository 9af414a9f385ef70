-- Raw pings, one row each, in daily partitions. target_id leads every key
-- so the table can later be distributed by target. Partitions are made ahead
-- by ensure_ping_partitions() (functions/partitions.sql).
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
