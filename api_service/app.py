"""The FastAPI application: resources in the lifespan, routes, one error shape."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from fastapi import FastAPI

from api_service import web
from api_service.errors import install_error_handlers
from api_service.history import routes as history
from api_service.ops import routes as ops
from api_service.results import routes as results
from api_service.targets import routes as targets
from api_service.targets.publisher import CommandPublisher
from api_service.targets.service import Targets
from shared.broker import BrokerLink
from shared.constants import Topology
from shared.db import TRANSIENT_DB_ERRORS, create_pool
from shared.errors import ConfigError
from shared.settings import Settings

log = logging.getLogger(__name__)

DB_CONNECT_TIMEOUT_S = 30.0


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            pool = await create_pool(settings, timeout=DB_CONNECT_TIMEOUT_S)
        except (*TRANSIENT_DB_ERRORS, asyncpg.PostgresError) as exc:
            error = ConfigError(f"cannot connect to PostgreSQL: {exc}")
            app.state.startup_error = error
            raise error from exc
        # The broker is not needed to start: commands published while it is
        # away are lost, and probers reconcile from the database.
        broker = BrokerLink(settings.amqp_url)
        publisher = CommandPublisher(broker, Topology(settings.amqp_prefix))
        app.state.settings = settings
        app.state.pool = pool
        app.state.broker = broker
        app.state.publisher = publisher
        app.state.targets = Targets(pool, publisher, settings)
        try:
            yield
        finally:
            await broker.close()
            await pool.close()
            log.info(
                "api stopped",
                extra={"published": publisher.published, "publish_failures": publisher.failed},
            )

    app = FastAPI(
        title="pingtrack",
        summary="Track IP addresses by ping and keep years of history.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.startup_error = None
    install_error_handlers(app)
    # In this order: it is the order of the paths in the OpenAPI document.
    app.include_router(ops.health_router)
    app.include_router(targets.reads)
    app.include_router(targets.writes)
    app.include_router(results.latest_router)
    app.include_router(results.pings_router)
    app.include_router(history.router)
    app.include_router(ops.storage_router)
    app.include_router(ops.metrics_router)
    app.include_router(ops.fleet_router)
    app.include_router(results.traceroute_router)
    web.install(app)
    return app
