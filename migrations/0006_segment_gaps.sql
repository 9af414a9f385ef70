-- Segments never span a gap: a paused target or a monitoring outage stays a
-- hole at every level. A segment ends when the next ping comes more than
-- max(gap_floor, gap_factor x the target's interval) after its last one
-- (shared/segments.py max_gap_us; docs/contraction.md). The rule itself:
-- ladder_max_gap() and ladder_build_segments() in functions/segments.sql.
ALTER TABLE ladder_settings
    ADD COLUMN gap_floor  interval NOT NULL DEFAULT interval '3 seconds'
        CHECK (gap_floor > interval '0'),
    ADD COLUMN gap_factor integer  NOT NULL DEFAULT 3 CHECK (gap_factor >= 1);
