"""`run()`: the writer service from start to clean shutdown."""

from __future__ import annotations

import asyncio
import logging

import asyncpg

from shared.broker import TRANSIENT_BROKER_ERRORS, BrokerLink, declare_results
from shared.constants import Topology
from shared.db import TRANSIENT_DB_ERRORS
from shared.errors import PingtrackError
from shared.settings import Settings
from writer_service.consumer import Writer
from writer_service.store import PingStore, create_writer_pool

log = logging.getLogger(__name__)

STARTUP_TIMEOUT_S = 30.0


class WriterStartupError(PingtrackError):
    """PostgreSQL or RabbitMQ could not be reached when the writer started."""


async def run(settings: Settings, stop: asyncio.Event) -> None:
    """Store result batches until `stop` is set, then finish the batch in hand and close."""
    topology = Topology(settings.amqp_prefix)
    try:
        pool = await create_writer_pool(settings, timeout=STARTUP_TIMEOUT_S)
    except TRANSIENT_DB_ERRORS as exc:
        raise WriterStartupError(f"cannot reach PostgreSQL: {exc!r}") from exc
    except asyncpg.PostgresError as exc:
        raise WriterStartupError(f"PostgreSQL refused the writer: {exc}") from exc
    link = BrokerLink(settings.amqp_url, publisher_confirms=True, prefetch=settings.writer_prefetch)
    try:
        try:
            await declare_results(await link.channel(timeout=STARTUP_TIMEOUT_S), topology)
        except TRANSIENT_BROKER_ERRORS as exc:
            raise WriterStartupError(f"cannot reach RabbitMQ: {exc!r}") from exc
        writer = Writer(PingStore(pool, dedup_window=settings.dedup_window), link, topology)
        log.info("writer started", extra={"queue": topology.results_queue})
        await writer.run(stop)
        log.info("writer stopped", extra=writer.stats.as_dict())
    finally:
        # Closing must finish even if our caller is being cancelled.
        await asyncio.shield(_close(link, pool))


async def _close(link: BrokerLink, pool: asyncpg.Pool) -> None:
    await link.close()
    await pool.close()
