-- Where a hostname target resolved to, from `ts` on: the address probed, or
-- (address NULL) why it did not resolve. A row is written when a prober
-- first resolves the name, when the address changes and at every failed
-- attempt, so the address behind any ping is the latest row at or before
-- the ping's ts (an as-of join), at no cost per ping.
CREATE TABLE target_addresses (
    target_id bigint      NOT NULL,
    ts        timestamptz NOT NULL,
    address   inet,
    error     text,
    PRIMARY KEY (target_id, ts),
    CHECK ((address IS NULL) <> (error IS NULL))
);

-- The address a target was probed at, at time `at` (NULL: unresolved, or an IP target).
CREATE FUNCTION target_address_at(p_target bigint, at timestamptz)
RETURNS inet LANGUAGE sql STABLE AS $$
    SELECT address FROM target_addresses
    WHERE target_id = p_target AND ts <= at
    ORDER BY ts DESC LIMIT 1
$$;
