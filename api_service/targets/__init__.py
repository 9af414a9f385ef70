"""Targets: what is probed, how often, and in which state; the source of truth.

`routes.py` maps /targets (one, in bulk, by tag) onto modules that know
nothing of HTTP: `probe.py` (what a target probes, checked and normalised),
`drafts.py` (a whole target as asked for: name, interval, timeout, tags),
`states.py` (pause, resume, stop, delete), `service.py` (every change written
to PostgreSQL first, then published), `bulk.py` (many at once),
`publisher.py` (commands to probers), `file.py` and `apply.py` (the
declarative targets file and making the targets match it). `schemas.py`
holds the request and response bodies.
"""
