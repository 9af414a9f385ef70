"""The REST API (FastAPI): targets, their results and history, and what operators watch.

One package per concept, each with a thin `routes.py` over modules that know
nothing of HTTP (the CLI calls those same modules):

    targets/   what is probed, how often, in which state: create, change, bulk,
               the targets file; every change written first, then published
    results/   raw pings (pages, CSV), the newest result of each target, traceroutes
    history/   series, segments, events and statistics over any range, from the
               cheapest tier exact enough
    ops/       /health, /metrics, /fleet and /storage
    web/       the dashboard page and its static files

and beside them the application (`app.py`: resources in the lifespan, the
routers, one error shape from `errors.py`), `main.py` (uvicorn), `deps.py`
(what handlers receive), `auth.py` (tokens) and `times.py` (how timestamps
are written). A service imports only `shared/`, never another service.
"""
