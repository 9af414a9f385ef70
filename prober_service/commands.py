"""Keeps the scheduler in step with the targets: live commands plus database reconciles.

Order on every (re)connect: bind the command queue, then load from the
database, then consume. A change committed while loading is then either in
the load or waiting in the queue; `rev` ordering makes seeing it twice harmless.
"""

from __future__ import annotations

import asyncio
import logging

import aiormq
import aiormq.abc
import asyncpg

from shared.backoff import delays
from shared.broker import TRANSIENT_BROKER_ERRORS, BrokerLink, declare_commands
from shared.codec import decode_command
from shared.constants import Topology
from shared.db import TRANSIENT_DB_ERRORS
from shared.errors import MalformedMessage

from .scheduler import Scheduler
from .shards import Ownership
from .targets import load_targets

log = logging.getLogger(__name__)

_BROKER_ERRORS: tuple[type[BaseException], ...] = (
    *TRANSIENT_BROKER_ERRORS,
    aiormq.exceptions.AMQPError,
)
_DB_ERRORS: tuple[type[BaseException], ...] = (*TRANSIENT_DB_ERRORS, asyncpg.PostgresError)
REBIND_TIMEOUT_S = 2.0


class TargetFeed:
    def __init__(
        self,
        link: BrokerLink,
        topology: Topology,
        pool: asyncpg.Pool,
        scheduler: Scheduler,
        ownership: Ownership,
    ) -> None:
        self._link = link
        self._topology = topology
        self._pool = pool
        self._scheduler = scheduler
        self._ownership = ownership
        self.commands = 0
        self.malformed = 0
        # The live subscription, so ownership changes can rebind it.
        self._lock = asyncio.Lock()
        self._channel: aiormq.abc.AbstractChannel | None = None
        self._queue: str | None = None

    async def reconcile(self) -> bool:
        """Apply the database's view of the targets; False if the database failed."""
        asked = list(self._scheduler.scheduled)
        try:
            specs = await load_targets(self._pool, asked, self._ownership.shards)
        except _DB_ERRORS as exc:
            log.warning("loading targets failed", extra={"error": repr(exc)})
            return False
        self._scheduler.reconcile(specs, asked)
        return True

    async def reconcile_forever(self, every_s: float) -> None:
        while True:
            await asyncio.sleep(every_s)
            await self.reconcile()

    async def follow(self) -> None:
        """Consume commands until cancelled, re-subscribing after every broker failure."""
        backoff = delays()
        while True:
            try:
                channel = await self._link.channel()
                await self._subscribe(channel)
                backoff = delays()
                # Returns when the channel dies, however it dies.
                await asyncio.wait([channel.closing])
            except _BROKER_ERRORS as exc:
                log.warning("command subscription lost", extra={"error": repr(exc)})
            await asyncio.sleep(next(backoff))

    async def _subscribe(self, channel: aiormq.abc.AbstractChannel) -> None:
        async with self._lock:
            await declare_commands(channel, self._topology)
            declared = await channel.queue_declare("", exclusive=True, auto_delete=True)
            queue = declared.queue
            assert queue is not None
            for key in self._ownership.routing_keys(self._topology):
                await channel.queue_bind(queue, self._topology.commands_exchange, routing_key=key)
            self._channel, self._queue = channel, queue
            await self.reconcile()
            await channel.basic_consume(queue, self._on_command)
        log.info("following target commands", extra={"queue": queue})

    async def rebind(self, added: frozenset[int], removed: frozenset[int]) -> None:
        """Follow a change of ownership: bind the new shards, then load their targets.

        Binding before loading means a change committed meanwhile is either in
        the load or in the queue. Removed shards' targets are already dropped.
        """
        async with self._lock:
            channel, queue = self._channel, self._queue
            if channel is not None and queue is not None and not channel.is_closed:
                exchange = self._topology.commands_exchange
                try:
                    # A hung broker must not hold up the heartbeat that called this.
                    async with asyncio.timeout(REBIND_TIMEOUT_S):
                        for key in self._ownership.routing_keys(self._topology, added):
                            await channel.queue_bind(queue, exchange, routing_key=key)
                        for key in self._ownership.routing_keys(self._topology, removed):
                            await channel.queue_unbind(queue, exchange, routing_key=key)
                except _BROKER_ERRORS as exc:
                    # The re-subscription after the failure binds the current shards.
                    log.warning("rebinding commands failed", extra={"error": repr(exc)})
            if added:
                await self.reconcile()

    async def _on_command(self, message: aiormq.abc.DeliveredMessage) -> None:
        try:
            spec = decode_command(message.body)
        except MalformedMessage as exc:
            self.malformed += 1
            log.warning("malformed command dropped", extra={"error": str(exc)})
        else:
            self.commands += 1
            self._scheduler.apply(spec)
        # Malformed or not, a command is acked: redelivering it cannot help.
        if message.delivery_tag is not None:
            await message.channel.basic_ack(message.delivery_tag)
