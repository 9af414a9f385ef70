-- The segments of one target and level starting in [p_from, p_to), as
-- segments_of() (migration 0031) returns them, but only the columns /stats
-- reduces: segments_of() unnests all ten arrays of a packed block (each a
-- TOAST value of its own, sumsq_us numeric), /stats needs five. SQL, so it
-- is inlined like segments_of() and the callers' filters reach both scans.
CREATE FUNCTION segment_figures_of(p_target bigint, p_level integer,
                                   p_from timestamptz, p_to timestamptz)
RETURNS TABLE (start_ts timestamptz, count integer, lost integer, sum_us bigint,
               hops smallint)
LANGUAGE sql STABLE AS $$
    SELECT s.start_ts, s.count, s.lost, s.sum_us, s.hops
    FROM segments s
    WHERE s.target_id = p_target AND s.level = p_level
      AND s.start_ts >= p_from AND s.start_ts < p_to
    UNION ALL
    SELECT u.start_ts, u.count, u.lost, u.sum_us, u.hops
    FROM segments_packed k
    CROSS JOIN LATERAL (
        SELECT k.block_start + a.off * interval '1 microsecond' AS start_ts, a.*
        FROM unnest(k.start_off, k.count, k.lost, k.sum_us, k.hops)
             AS a(off, count, lost, sum_us, hops)
    ) u
    WHERE k.target_id = p_target AND k.level = p_level
      AND k.block_start > p_from - (SELECT ladder_pack_span(l.max_span) FROM ladder_levels l
                                         WHERE l.level = p_level)
      AND k.block_start < p_to
      AND u.start_ts >= p_from AND u.start_ts < p_to
$$;
