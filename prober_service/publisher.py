"""Results leave in batches, persistent, with publisher confirms.

While the broker is away, sealed batches wait in a bounded buffer; when it
overflows the oldest batches go, counted and logged. A batch keeps its id
across retries, so a re-send after a lost confirm is stored once.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import deque

import aiormq
import aiormq.abc
from aiormq import spec

from shared.backoff import delays
from shared.broker import TRANSIENT_BROKER_ERRORS, BrokerLink, declare_results
from shared.codec import AddressRecord, ProbeDetail, ResultBatch, encode_batch
from shared.constants import BATCH_ID_HEADER, CONTENT_TYPE, Topology
from shared.settings import Settings

from .waker import Waker

log = logging.getLogger(__name__)

PUBLISH_ERRORS: tuple[type[BaseException], ...] = (
    *TRANSIENT_BROKER_ERRORS,
    aiormq.exceptions.AMQPError,  # nack, returned (unroutable), channel closed
)


class Publisher:
    """The engine's result sink: batches results and publishes them."""

    def __init__(
        self,
        link: BrokerLink,
        topology: Topology,
        settings: Settings,
        prober_id: str,
        *,
        confirm_timeout: float = 10.0,
    ) -> None:
        self._link = link
        self._topology = topology
        self._max_results = settings.batch_max_results
        self._max_delay = settings.batch_max_delay_s
        self._buffer_max = settings.buffer_max_results
        self._prober_id = prober_id
        self._confirm_timeout = confirm_timeout
        self._current = self._new_batch()
        self._sealed: deque[ResultBatch] = deque()
        self._buffered = 0  # results held: current, sealed and in-flight batches
        self._declared_on: aiormq.abc.AbstractChannel | None = None
        self._waker = Waker()
        self.published_results = 0
        self.published_batches = 0
        self.dropped_results = 0

    @property
    def buffered(self) -> int:
        return self._buffered

    def _new_batch(self) -> ResultBatch:
        return ResultBatch(prober=self._prober_id)

    def add(
        self, target_id: int, ts_us: int, rtt_us: int | None, ttl: int | None, hops: int | None
    ) -> None:
        self._current.append(target_id, ts_us, rtt_us, ttl, hops)
        self._buffered += 1
        if len(self._current) >= self._max_results:
            self._seal()
            self._waker.wake()
        if self._buffered > self._buffer_max:
            self._drop_oldest()

    def add_address(self, record: AddressRecord) -> None:
        """A hostname's resolution; rides in the next batch (rare, not counted as a result)."""
        self._current.addresses.append(record)

    def add_detail(self, detail: ProbeDetail) -> None:
        """Kind-specific fields of a tcp/http result added (or about to be) with `add`."""
        self._current.details.append(detail)

    def _seal(self) -> None:
        if not self._current.empty:
            self._sealed.append(self._current)
            self._current = self._new_batch()

    def _drop_oldest(self) -> None:
        dropped = 0
        while self._buffered > self._buffer_max:
            if not self._sealed:
                self._seal()
                if not self._sealed:
                    break  # only the batch in flight is left
            victim = self._sealed.popleft()
            self._buffered -= len(victim)
            dropped += len(victim)
        self.dropped_results += dropped
        log.warning(
            "result buffer full, oldest results dropped",
            extra={"dropped": dropped, "dropped_total": self.dropped_results},
        )

    async def run(self) -> None:
        """Seal a batch every `batch_max_delay_s` (or when full) and publish, until cancelled."""
        try:
            await self._ready_channel()  # declare now: the queue exists before any writer
        except PUBLISH_ERRORS as exc:
            log.warning("cannot declare the results queue yet", extra={"error": repr(exc)})
        while True:
            await self._waker.sleep(self._max_delay)
            self._seal()
            await self._publish_sealed()

    async def _publish_sealed(self) -> None:
        backoff = delays()
        failing = False
        while self._sealed:
            # Out of the deque while in flight, so an overflow cannot drop it.
            batch = self._sealed.popleft()
            done = False
            try:
                await self._publish(batch)
                done = True
            except PUBLISH_ERRORS as exc:
                if not failing:
                    log.warning(
                        "publishing results failed; buffering",
                        extra={"error": repr(exc), "buffered": self._buffered},
                    )
                failing = True
            finally:
                if not done:
                    self._sealed.appendleft(batch)
            if not done:
                await asyncio.sleep(next(backoff))
                continue
            self._buffered -= len(batch)
            self.published_results += len(batch)
            self.published_batches += 1
            if failing:
                log.warning("publishing results again", extra={"buffered": self._buffered})
                failing = False
                backoff = delays()

    async def _ready_channel(self) -> aiormq.abc.AbstractChannel:
        channel = await self._link.channel()
        if channel is not self._declared_on:
            # The queue must exist even if no writer has started yet.
            await declare_results(channel, self._topology)
            self._declared_on = channel
        return channel

    async def _publish(self, batch: ResultBatch) -> None:
        channel = await self._ready_channel()
        batch_id = str(uuid.UUID(bytes=batch.batch_id))
        await channel.basic_publish(
            encode_batch(batch),
            exchange=self._topology.results_exchange,
            routing_key=self._topology.results_queue,
            properties=spec.Basic.Properties(
                delivery_mode=2,
                content_type=CONTENT_TYPE,
                message_id=batch_id,
                headers={BATCH_ID_HEADER: batch_id},
            ),
            mandatory=True,
            timeout=self._confirm_timeout,
        )

    async def close(self, timeout: float) -> None:
        """Publish everything held, waiting at most `timeout` seconds."""
        self._seal()
        try:
            async with asyncio.timeout(timeout):
                await self._publish_sealed()
        except TimeoutError:
            log.error(
                "results not published before shutdown",
                extra={"unpublished": self._buffered},
            )
        log.info(
            "publisher closed",
            extra={
                "published_results": self.published_results,
                "published_batches": self.published_batches,
                "dropped_results": self.dropped_results,
                "unpublished": self._buffered,
            },
        )
