"""What operators watch: health, metrics, the probers of the fleet, and storage.

`routes.py` maps GET /health, /metrics, /fleet and /storage onto modules that
know nothing of HTTP: `health.py` (every check, and the degraded reasons),
`ladder_health.py` (the ladder's record of its rounds), `fleet.py` (prober
heartbeats), `metrics.py` (the Prometheus text), `storage.py` (bytes per tier
now) and `projection.py` (pure storage math).
"""
