-- Targets' history beside the targets table.

-- The address a target was probed at, at time `at` (NULL: unresolved, or an IP target).
CREATE OR REPLACE FUNCTION target_address_at(p_target bigint, at timestamptz)
RETURNS inet LANGUAGE sql STABLE AS $$
    SELECT address FROM target_addresses
    WHERE target_id = p_target AND ts <= at
    ORDER BY ts DESC LIMIT 1
$$;
