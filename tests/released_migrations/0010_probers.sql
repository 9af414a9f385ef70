-- Prober membership: each live prober heartbeats its row; the shards it
-- lists are the ones it pings. A fleet is the probers sharing one broker
-- prefix (they share the command exchange).
CREATE TABLE probers (
    fleet      text        NOT NULL,
    id         text        NOT NULL,
    instance   uuid        NOT NULL,   -- one process; guards against two probers with one id
    started_at timestamptz NOT NULL DEFAULT now(),
    last_seen  timestamptz NOT NULL DEFAULT now(),
    shards     integer[]   NOT NULL DEFAULT '{}',
    stats      jsonb       NOT NULL DEFAULT '{}',
    PRIMARY KEY (fleet, id)
);
CREATE INDEX probers_last_seen ON probers (fleet, last_seen);
