-- Tolerances tuned on synthetic 1 Hz days (docs/contraction.md, "Why these
-- defaults"): the first defaults gave ~31 000 level-1 and ~1 800 level-2
-- segments per target-day on a jittery WAN path, more bytes than the packed
-- pings they stand for. Level 1 widens to 5 ms / 20 %, level 2 to 15 ms / 50 %,
-- and a level 3 at 100 ms / 300 % absorbs the isolated spikes that set level
-- 2's floor, keeping loss runs, hop changes, gaps and sustained shifts as
-- boundaries (and every spike as a segment's max) for 5 years.
UPDATE ladder_levels SET abs_tolerance_us = 5000, rel_tolerance = 0.20,
                         retention = interval '30 days'
WHERE level = 1 AND abs_tolerance_us = 2000 AND rel_tolerance = 0.10;
UPDATE ladder_levels SET abs_tolerance_us = 15000, rel_tolerance = 0.50,
                         retention = interval '90 days'
WHERE level = 2 AND abs_tolerance_us = 10000 AND rel_tolerance = 0.30;
INSERT INTO ladder_levels (level, abs_tolerance_us, rel_tolerance, max_span, retention)
VALUES (3, 100000, 3.00, interval '1 day', interval '5 years')
ON CONFLICT (level) DO NOTHING;
SELECT ensure_segment_partitions();
