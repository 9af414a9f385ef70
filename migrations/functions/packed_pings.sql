-- Raw pings in either form: rows in daily partitions while fresh, packed
-- losslessly into one pings_packed row per target and hour once settled
-- (the encoding is described beside the table, migrations/0004_packed_pings.sql,
-- and in docs/contraction.md).

-- Value i (0-based) of a run of fixed-width unsigned fields.
CREATE OR REPLACE FUNCTION ladder_bits_at(bits varbit, width integer, i integer) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT (B'0' || substring(bits FROM i * width + 1 FOR width))::bit(64)::bigint >> (63 - width)
$$;

-- Number of bits needed for a non-negative value (0 needs none).
CREATE OR REPLACE FUNCTION ladder_bit_length(v bigint) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT length(ltrim(v::bit(64)::text, '0'))
$$;

-- The pings of one packed block, in time order.
CREATE OR REPLACE FUNCTION unpack_pings(k pings_packed)
RETURNS TABLE (ts timestamptz, rtt_us integer, ttl smallint, hops smallint)
LANGUAGE sql IMMUTABLE AS $$
    WITH v AS (
        SELECT i,
               CASE WHEN i = 0 THEN 0
                    ELSE k.ts_step + ladder_bits_at(k.ts_bits, k.ts_width, i - 1) END AS gap,
               ladder_bits_at(k.rtt_bits, k.rtt_width, i) AS code
        FROM generate_series(0, k.n - 1) AS i
    ), r AS (
        SELECT g AS i, u.t, u.h
        FROM unnest(k.run_start, k.run_ttl, k.run_hops) WITH ORDINALITY AS u(s, t, h, o)
        CROSS JOIN LATERAL generate_series(u.s, coalesce(k.run_start[u.o + 1], k.n) - 1) AS g
    )
    SELECT k.first_ts + (sum(v.gap) OVER (ORDER BY v.i)) * interval '1 microsecond',
           CASE WHEN v.code = 0 THEN NULL ELSE (k.rtt_base + v.code - 1)::integer END,
           r.t, r.h
    FROM v JOIN r USING (i)
    ORDER BY v.i
$$;

-- Every raw ping of one target in [p_from, p_to), whichever form holds it,
-- in time order. Rollups, late data and the API all read through this.
CREATE OR REPLACE FUNCTION raw_pings(p_target bigint, p_from timestamptz, p_to timestamptz)
RETURNS TABLE (ts timestamptz, rtt_us integer, ttl smallint, hops smallint)
LANGUAGE sql STABLE AS $$
    SELECT x.ts, x.rtt_us, x.ttl, x.hops FROM (
        SELECT p.ts, p.rtt_us, p.ttl, p.hops
        FROM pings p
        WHERE p.target_id = p_target AND p.ts >= p_from AND p.ts < p_to
        UNION ALL
        SELECT u.ts, u.rtt_us, u.ttl, u.hops
        FROM pings_packed k CROSS JOIN LATERAL unpack_pings(k) u
        WHERE k.target_id = p_target
          AND k.block_start >= date_bin(interval '1 hour', p_from, ladder_origin())
          AND k.block_start < p_to
          AND u.ts >= p_from AND u.ts < p_to
    ) x
    ORDER BY x.ts
$$;

-- Packs the row-form pings of one daily partition (merged with any packed
-- block they fall into, for late data) and empties the partition. The caller
-- holds the ladder lock. Returns the number of pings moved out of row form.
CREATE OR REPLACE FUNCTION ladder_pack_partition(part regclass) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    moved bigint;
BEGIN
    -- Writers of late rows into this day wait; rows they add after us are
    -- packed by the next run.
    EXECUTE format('LOCK TABLE %s IN EXCLUSIVE MODE', part);
    EXECUTE format('SELECT count(*) FROM %s', part) INTO moved;
    IF moved = 0 THEN
        RETURN 0;
    END IF;

    EXECUTE format($q$
        CREATE TEMP TABLE ladder_pack_src ON COMMIT DROP AS
        SELECT target_id,
               date_bin(interval '1 hour', ts, ladder_origin()) AS blk,
               ts, rtt_us, ttl, hops
        FROM %s
    $q$, part);
    -- Late rows whose block is packed already: unpack that block and repack it whole.
    WITH old AS (
        DELETE FROM pings_packed k
        USING (SELECT DISTINCT target_id, blk FROM ladder_pack_src) s
        WHERE k.target_id = s.target_id AND k.block_start = s.blk
        RETURNING k.*
    )
    INSERT INTO ladder_pack_src
    SELECT o.target_id, o.block_start, u.ts, u.rtt_us, u.ttl, u.hops
    FROM old o CROSS JOIN LATERAL unpack_pings(o::pings_packed) u;

    INSERT INTO pings_packed
    WITH d AS (
        SELECT DISTINCT ON (target_id, ts) * FROM ladder_pack_src ORDER BY target_id, ts
    ), g AS (
        SELECT target_id, blk, ts, rtt_us, ttl, hops,
               (row_number() OVER w - 1)::integer AS i,
               (extract(epoch FROM ts - lag(ts) OVER w) * 1000000)::bigint AS gap,
               (ttl IS DISTINCT FROM lag(ttl) OVER w OR hops IS DISTINCT FROM lag(hops) OVER w
                OR lag(ts) OVER w IS NULL) AS new_run
        FROM d
        WINDOW w AS (PARTITION BY target_id, blk ORDER BY ts)
    ), f AS (
        SELECT target_id, blk, count(*)::integer AS n, min(ts) AS first_ts,
               coalesce(min(gap), 0) AS ts_step,
               ladder_bit_length(coalesce(max(gap) - min(gap), 0)) AS ts_width,
               coalesce(min(rtt_us), 0) AS rtt_base,
               ladder_bit_length(coalesce(max(rtt_us)::bigint - min(rtt_us) + 1, 0)) AS rtt_width
        FROM g GROUP BY target_id, blk
    )
    SELECT g.target_id, g.blk, f.n, f.first_ts, f.ts_step, f.ts_width,
           coalesce(string_agg(substring((g.gap - f.ts_step)::bit(64) FROM 65 - f.ts_width)::text,
                               '' ORDER BY g.i) FILTER (WHERE g.i > 0), '')::varbit,
           f.rtt_base, f.rtt_width,
           string_agg(substring(CASE WHEN g.rtt_us IS NULL THEN 0
                                     ELSE g.rtt_us::bigint - f.rtt_base + 1 END::bit(64)
                                FROM 65 - f.rtt_width)::text, '' ORDER BY g.i)::varbit,
           array_agg(g.i ORDER BY g.i) FILTER (WHERE g.new_run),
           array_agg(g.ttl ORDER BY g.i) FILTER (WHERE g.new_run),
           array_agg(g.hops ORDER BY g.i) FILTER (WHERE g.new_run)
    FROM g JOIN f USING (target_id, blk)
    GROUP BY g.target_id, g.blk, f.n, f.first_ts, f.ts_step, f.ts_width, f.rtt_base, f.rtt_width;

    DROP TABLE ladder_pack_src;
    EXECUTE format('TRUNCATE %s', part);
    RETURN moved;
END;
$$;
