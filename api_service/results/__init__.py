"""Results as the probes left them: raw pings, the newest result of each target, traces.

`routes.py` maps /targets/{id}/pings, /results/latest, /targets/{id}/latest and
/targets/{id}/traceroute onto `pings.py` (keyset pages and the CSV stream over
both raw forms), `latest.py` (the newest result and the one definition of a
stale target) and `traceroute.py` (trace now, store, read back); `schemas.py`
holds their response bodies.
"""
