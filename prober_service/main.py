"""The prober service: `run(settings, stop)` pings until `stop` is set, then shuts down."""

from __future__ import annotations

import asyncio
import logging
import os
import socket

import asyncpg

from shared.broker import BrokerLink
from shared.constants import Topology
from shared.db import TRANSIENT_DB_ERRORS, create_pool
from shared.errors import PingtrackError
from shared.settings import MAX_TIMEOUT_S, Settings

from .commands import TargetFeed
from .engine import Pinger
from .membership import Membership
from .names import Names
from .probe_http import ssl_context
from .probes import Probes
from .publisher import Publisher
from .resolve import HostResolver
from .scheduler import Scheduler
from .shards import Ownership
from .stats import ProberStats

log = logging.getLogger(__name__)

# How long shutdown may spend publishing what is held; the rest waits in the
# spool for the next start. Well inside compose's stop_grace_period (30 s),
# after the pings in flight have answered.
FLUSH_TIMEOUT_S = 5.0


def prober_id_for(settings: Settings) -> str:
    return settings.prober_id or f"{socket.gethostname()}-{os.getpid()}"


async def run(settings: Settings, stop: asyncio.Event) -> None:
    prober_id = prober_id_for(settings)
    topology = Topology(settings.amqp_prefix)
    publish_link = BrokerLink(settings.amqp_url, publisher_confirms=True)
    command_link = BrokerLink(settings.amqp_url, publisher_confirms=False, prefetch=256)
    publisher = Publisher(publish_link, topology, settings, prober_id)
    pinger = Pinger(publisher.add, mode=settings.icmp_mode)
    probes = Probes(
        publisher.add,
        publisher.add_detail,
        limit=settings.probe_concurrency,
        context=ssl_context(settings.http_ca_file),
        body_max=settings.http_body_max_bytes,
        destinations=settings.probe_destinations,
    )
    pinger.open()  # raises IcmpUnavailable (a PingtrackError) when ICMP is not permitted
    try:
        await publisher.open()  # the spool, before anything is published: raises SpoolUnavailable
        try:
            pool = await create_pool(settings, min_size=1, max_size=2)
        except TRANSIENT_DB_ERRORS as exc:
            raise PingtrackError(f"cannot reach PostgreSQL: {exc!r}") from exc
        except asyncpg.PostgresError as exc:
            raise PingtrackError(f"PostgreSQL refused the connection: {exc}") from exc
        try:
            ownership = Ownership()
            resolver = HostResolver(settings.hosts_file, settings.resolve_system)
            names = Names(
                resolver,
                lambda tid, address: scheduler.set_address(tid, address),
                publisher.add_address,
                settings.resolve_interval_s,
            )
            scheduler = Scheduler(
                pinger,
                ownership.owns,
                ownership.may_send,
                probes=probes,
                names=names,
                probe_floor_ms=round(settings.probe_min_interval_s * 1000),
            )
            feed = TargetFeed(command_link, topology, pool, scheduler, ownership)
            stats = ProberStats(pinger, scheduler, publisher, ownership, probes, names)
            membership = Membership(
                pool,
                settings.amqp_prefix,
                prober_id,
                ownership,
                scheduler,
                feed.rebind,
                stats.snapshot,
            )
            await membership.join()
            log.info("prober started", extra={"prober_id": prober_id, "modes": pinger.modes})
            try:
                await _serve(settings, stop, pinger, probes, scheduler, feed, publisher, membership)
            finally:
                await names.close()
        finally:
            await pool.close()
    finally:
        pinger.close()
        publisher.release()
        await command_link.close()
        await publish_link.close()
    log.info(
        "prober stopped",
        extra={
            "prober_id": prober_id,
            "pings_sent": pinger.sent.total(),
            "results": pinger.emitted.total(),
            "lost": pinger.stats.lost,
            "probes_sent": probes.sent.total(),
            "probes_failed": probes.failed,
            "probes_busy": probes.busy,
            "unresolved_slots": scheduler.unresolved,
            "missed_slots": scheduler.missed.total(),
            "local_failures": dict(pinger.local.by_reason + probes.local.by_reason),
            "published_results": publisher.published_results,
            "dropped_results": publisher.dropped_results,
            "unpublished_results": publisher.buffered,
            **publisher.spool_figures(),
            "malformed_commands": feed.malformed,
            # Per target, so a test (or an operator) can match stored against sent.
            "sent_per_target": dict(pinger.sent + probes.sent),
            "missed_per_target": dict(scheduler.missed),
            "unsent_per_target": dict(pinger.local.by_target + probes.local.by_target),
        },
    )


async def _serve(
    settings: Settings,
    stop: asyncio.Event,
    pinger: Pinger,
    probes: Probes,
    scheduler: Scheduler,
    feed: TargetFeed,
    publisher: Publisher,
    membership: Membership,
) -> None:
    async with asyncio.TaskGroup() as group:
        reaper = group.create_task(pinger.run(), name="icmp-timeouts")
        sender = group.create_task(scheduler.run(), name="schedule")
        publishing = group.create_task(publisher.run(), name="publish")
        following = group.create_task(feed.follow(), name="commands")
        reconciling = group.create_task(
            feed.reconcile_forever(settings.reconcile_interval_s), name="reconcile"
        )
        heartbeating = group.create_task(membership.run(), name="membership")
        await stop.wait()
        # Stop sending and hand the shards over at once; let the pings in
        # flight answer or time out, then flush.
        scheduler.stop()
        heartbeating.cancel()
        following.cancel()
        reconciling.cancel()
        await sender
        await asyncio.wait({heartbeating})
        await asyncio.shield(membership.leave())
        await asyncio.gather(pinger.drain(MAX_TIMEOUT_S + 1.0), probes.drain(MAX_TIMEOUT_S + 1.0))
        reaper.cancel()
        publishing.cancel()
        await asyncio.wait({publishing})  # none of its publishes in flight during close()
        await asyncio.shield(publisher.close(FLUSH_TIMEOUT_S))
