-- On-demand traceroutes, kept per target (target_id leads the key).
CREATE TABLE traceroutes (
    target_id bigint      NOT NULL REFERENCES targets (id) ON DELETE CASCADE,
    ts        timestamptz NOT NULL DEFAULT now(),
    reached   boolean     NOT NULL,
    hops      jsonb       NOT NULL,  -- [{"ttl", "address" | null, "rtt_ms" | null}]
    PRIMARY KEY (target_id, ts)
);
