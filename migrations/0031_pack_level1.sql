-- Every segment level packed, level 1 included: one row per target and day
-- (or per block, for levels whose blocks are longer than a day), so a level
-- whose build blocks are hours packs a day of them once the day has settled.
-- A rebuild of a range inside a packed day first unpacks that day back into
-- rows (less the range it rebuilds), so the day's rows are whole again when
-- the next round re-packs it; late data ends as if on time (ladder_pack_span()
-- and the packing in functions/segments.sql; docs/contraction.md).

-- Only the levels migration 0030 left unpacked by its rule (blocks under a
-- day) change: a level that an operator unpacked keeps that choice.
UPDATE ladder_levels SET packed = true WHERE NOT packed AND max_span < interval '1 day';
ALTER TABLE ladder_levels ALTER COLUMN packed SET DEFAULT true;
