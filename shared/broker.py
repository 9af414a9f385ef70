"""RabbitMQ: one link per service that reconnects with backoff, and the topology."""

from __future__ import annotations

import asyncio
import logging

import aiormq
import aiormq.abc

from shared.backoff import retry
from shared.constants import Topology

log = logging.getLogger(__name__)

TRANSIENT_BROKER_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    ConnectionError,
    aiormq.exceptions.AMQPConnectionError,
    aiormq.exceptions.ChannelInvalidStateError,
    asyncio.TimeoutError,
)


class BrokerLink:
    """A connection and one channel, re-opened on demand after a failure."""

    def __init__(self, url: str, *, publisher_confirms: bool = True, prefetch: int = 0) -> None:
        self._url = url
        self._confirms = publisher_confirms
        self._prefetch = prefetch
        self._connection: aiormq.abc.AbstractConnection | None = None
        self._channel: aiormq.abc.AbstractChannel | None = None
        self._lock = asyncio.Lock()

    @property
    def is_open(self) -> bool:
        return (
            self._connection is not None
            and not self._connection.is_closed
            and self._channel is not None
            and not self._channel.is_closed
        )

    async def channel(self, timeout: float | None = None) -> aiormq.abc.AbstractChannel:
        """A live channel, reconnecting (with backoff, up to `timeout`) when needed."""
        async with self._lock:
            if self.is_open:
                assert self._channel is not None
                return self._channel
            await self._close_quietly()
            self._channel = await retry(
                self._open,
                what="connect to RabbitMQ",
                retry_on=TRANSIENT_BROKER_ERRORS,
                timeout=timeout,
            )
            return self._channel

    async def _open(self) -> aiormq.abc.AbstractChannel:
        self._connection = await asyncio.wait_for(aiormq.connect(self._url), 10)
        channel = await self._connection.channel(publisher_confirms=self._confirms)
        if self._prefetch:
            await channel.basic_qos(prefetch_count=self._prefetch)
        log.info("connected to RabbitMQ")
        return channel

    async def _close_quietly(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and not connection.is_closed:
            try:
                await asyncio.wait_for(connection.close(), 5)
            except Exception as exc:  # already broken: nothing more to do with it
                log.debug("closing a broken connection failed", extra={"error": repr(exc)})

    async def close(self) -> None:
        async with self._lock:
            await self._close_quietly()


async def declare_commands(channel: aiormq.abc.AbstractChannel, topology: Topology) -> None:
    await channel.exchange_declare(topology.commands_exchange, exchange_type="topic", durable=True)


async def declare_results(channel: aiormq.abc.AbstractChannel, topology: Topology) -> None:
    """Results exchange and durable queue, with a dead-letter queue beside them.

    Both prober and writer declare this, so whichever starts first nothing is
    unroutable.
    """
    await channel.exchange_declare(topology.dead_exchange, exchange_type="fanout", durable=True)
    await channel.queue_declare(
        topology.dead_queue, durable=True, arguments={"x-queue-type": "quorum"}
    )
    await channel.queue_bind(topology.dead_queue, topology.dead_exchange, routing_key="")
    await channel.exchange_declare(topology.results_exchange, exchange_type="direct", durable=True)
    await channel.queue_declare(
        topology.results_queue,
        durable=True,
        arguments={"x-queue-type": "quorum", "x-dead-letter-exchange": topology.dead_exchange},
    )
    await channel.queue_bind(
        topology.results_queue, topology.results_exchange, routing_key=topology.results_queue
    )
