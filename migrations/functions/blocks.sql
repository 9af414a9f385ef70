-- The origin every block is aligned to: 2000-01-01 00:00 UTC. An hour of
-- packed pings, a level's max_span, a day of packed segments and the API's
-- series buckets all start on date_bin(width, ts, ladder_origin()), so no
-- block of one crosses an edge of another. shared/blocks.py is the same
-- origin for Python. This file sorts first: SQL functions in the others
-- call it.
--
-- IMMUTABLE and SQL: the planner inlines it as a constant, so a call costs
-- what the literal did (and partition pruning and index conditions see a
-- constant as before).
CREATE OR REPLACE FUNCTION ladder_origin() RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT timestamptz '2000-01-01 00:00:00+00'
$$;
