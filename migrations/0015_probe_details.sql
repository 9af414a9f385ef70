-- What tcp and http probes see beyond the round trip, one row per result that
-- has something to say (a failure reason, an HTTP status), keyed like its
-- ping. Daily partitions like pings, created with them (ensure_ping_partitions)
-- and dropped once raw pings of their day are (probe_details_retention, run
-- by ladder_run).
CREATE TABLE probe_details (
    target_id       bigint      NOT NULL,
    ts              timestamptz NOT NULL,    -- the ping's send time
    status          smallint,                -- HTTP status code
    ttfb_us         integer,                 -- time to first byte
    cert_expires_at timestamptz,             -- https: the certificate's notAfter
    error           text,                    -- timeout, refused, tls, status, body, ...
    PRIMARY KEY (target_id, ts)
) PARTITION BY RANGE (ts);
