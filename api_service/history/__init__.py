"""History: a target's pings over any range, from the cheapest tier exact enough.

`routes.py` maps /targets/{id}/series, /segments, /events and /stats onto
`series.py` (graph buckets), `events.py` (segments of a level, and events),
and `stats.py` (figures over a range), which start from `scope.py` (the
range, the target, the ladder, where the rolled-up tiers stop). The pure
parts have modules of their own: `tier_choice.py` (which tier, on what
grid), `buckets.py` (what rows add to buckets), `event_detection.py` (loss
runs, hop changes, latency shifts) and `segment_figures.py` (percentiles,
loss runs, outages).
"""
