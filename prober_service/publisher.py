"""Results leave in batches, persistent, with publisher confirms, by way of a disk spool.

A sealed batch is encoded once, appended to the spool (`spool.py`) and
fsynced, then published from there with the same bytes and id; it leaves the
spool when the broker confirms it. A broker outage or a kill -9 thus costs at
most the batch being filled; a restarted prober publishes what its spool
holds, in order, before anything new. A re-send after a lost confirm keeps
the batch id, so it is stored once.

If the spool refuses writes (disk full, I/O error), sealed batches wait in a
bounded memory buffer and are published from there meanwhile; when that
overflows the oldest go, counted and logged, as do the oldest batches of a
full spool.
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

from .spool import Spool
from .spool_dir import prober_directory
from .spool_frames import Entry
from .waker import Waker

log = logging.getLogger(__name__)

PUBLISH_ERRORS: tuple[type[BaseException], ...] = (
    *TRANSIENT_BROKER_ERRORS,
    aiormq.exceptions.AMQPError,  # nack, returned (unroutable), channel closed
)


class Publisher:
    """The engine's result sink: batches results, spools them and publishes them."""

    def __init__(
        self,
        link: BrokerLink,
        topology: Topology,
        settings: Settings,
        prober_id: str,
        *,
        spool: Spool | None = None,
        confirm_timeout: float = 10.0,
    ) -> None:
        self._link = link
        self._topology = topology
        self._max_results = settings.batch_max_results
        self._max_delay = settings.batch_max_delay_s
        self._buffer_max = settings.buffer_max_results
        self._prober_id = prober_id
        self._confirm_timeout = confirm_timeout
        self._spool = spool or Spool(
            prober_directory(settings.spool_dir, settings.amqp_prefix, prober_id),
            settings.spool_max_bytes,
        )
        self._current = self._new_batch()
        self._sealed: deque[Entry] = deque()  # encoded, not in the spool yet
        # Results in memory: the current batch, sealed ones, one being spooled
        # or published from memory.
        self._held = 0
        self._spool_failing = False
        self._writing: asyncio.Task[bool] | None = None  # an append, shielded from cancels
        self._sealed_waker = Waker()  # wakes the spooler: a batch is full
        self._spooled_waker = Waker()  # wakes the publishing: there is something to send
        self._declared_on: aiormq.abc.AbstractChannel | None = None
        self.published_results = 0
        self.published_batches = 0
        self._memory_dropped = 0

    @property
    def buffered(self) -> int:
        """Results the broker has not confirmed: in memory and in the spool."""
        return self._held + self._spool.results

    @property
    def dropped_results(self) -> int:
        return self._memory_dropped + self._spool.dropped_results

    def spool_figures(self) -> dict[str, int]:
        spool = self._spool
        return {
            "spool_bytes": spool.bytes,
            "spool_batches": spool.batches,
            "spool_results": spool.results,
            "spool_dropped_batches": spool.dropped_batches,
            "spool_dropped_results": spool.dropped_results,
            "spool_corrupt": spool.corrupt,
        }

    def _new_batch(self) -> ResultBatch:
        return ResultBatch(prober=self._prober_id)

    def add(
        self, target_id: int, ts_us: int, rtt_us: int | None, ttl: int | None, hops: int | None
    ) -> None:
        self._current.append(target_id, ts_us, rtt_us, ttl, hops)
        self._held += 1
        if len(self._current) >= self._max_results:
            self._seal()
            self._sealed_waker.wake()
        if self._held > self._buffer_max:
            self._drop_oldest()

    def add_address(self, record: AddressRecord) -> None:
        """A hostname's resolution; rides in the next batch (rare, not counted as a result)."""
        self._current.addresses.append(record)

    def add_detail(self, detail: ProbeDetail) -> None:
        """Kind-specific fields of a tcp/http result added (or about to be) with `add`."""
        self._current.details.append(detail)

    def _seal(self) -> None:
        """Encode the current batch, once: these bytes are spooled and published."""
        batch = self._current
        if not batch.empty:
            self._sealed.append(Entry(batch.batch_id, len(batch), encode_batch(batch)))
            self._current = self._new_batch()

    def _drop_oldest(self) -> None:
        dropped = 0
        while self._held > self._buffer_max:
            if not self._sealed:
                self._seal()
                if not self._sealed:
                    break  # only batches being spooled or sent are left
            victim = self._sealed.popleft()
            self._held -= victim.results
            dropped += victim.results
        self._memory_dropped += dropped
        log.warning(
            "result buffer full, oldest results dropped",
            extra={"dropped": dropped, "dropped_total": self._memory_dropped},
        )

    async def open(self) -> None:
        """Lock and read back the spool, before anything new is published.

        Raises SpoolUnavailable when the directory cannot be used.
        """
        if self._spool.is_open:
            return
        await asyncio.to_thread(self._spool.open)
        spool = self._spool
        if spool.batches or spool.corrupt or spool.adopted:
            log.warning(
                "publishing what the spool holds first",
                extra={
                    "path": str(spool.directory),
                    "batches": spool.batches,
                    "results": spool.results,
                    "bytes": spool.bytes,
                    "adopted_segments": spool.adopted,
                    "corrupt_tails": spool.corrupt,
                },
            )

    async def run(self) -> None:
        """Seal a batch every `batch_max_delay_s` (or when full), spool it and publish
        from the spool, until cancelled."""
        await self.open()
        async with asyncio.TaskGroup() as group:
            group.create_task(self._spool_forever(), name="spool-results")
            group.create_task(self._publish_forever(), name="publish-results")

    async def _spool_forever(self) -> None:
        while True:
            await self._sealed_waker.sleep(self._max_delay)
            self._seal()
            await self._spool_sealed()

    async def _spool_sealed(self) -> None:
        backoff = delays()
        while self._sealed and self._spool.is_open:
            # Owned by self._writing and shielded: a cancel must not split an
            # append from its bookkeeping; close() waits for it.
            self._writing = asyncio.create_task(self._spool_one(self._sealed.popleft()))
            if not await asyncio.shield(self._writing):
                await asyncio.sleep(next(backoff))

    async def _spool_one(self, entry: Entry) -> bool:
        try:
            await self._spool.append(entry)
        except OSError as exc:
            self._sealed.appendleft(entry)
            if not self._spool_failing:
                log.error(
                    "writing the spool failed; results wait in memory",
                    extra={"error": repr(exc), "in_memory": self._held},
                )
                self._spool_failing = True
            self._spooled_waker.wake()  # publish from memory meanwhile
            return False
        self._held -= entry.results
        if self._spool_failing:
            log.warning("writing the spool again", extra={"in_memory": self._held})
            self._spool_failing = False
        self._spooled_waker.wake()
        return True

    async def _publish_forever(self) -> None:
        try:
            await self._ready_channel()  # declare now: the queue exists before any writer
        except PUBLISH_ERRORS as exc:
            log.warning("cannot declare the results queue yet", extra={"error": repr(exc)})
        while True:
            await self._publish_available()
            await self._spooled_waker.sleep(None)

    def _next(self) -> tuple[Entry | None, bool]:
        """The oldest entry to publish, and whether it comes from memory (not the spool)."""
        entry = self._spool.head()
        if entry is not None:
            return entry, False
        if (self._spool_failing or not self._spool.is_open) and self._sealed:
            return self._sealed.popleft(), True
        return None, False

    async def _publish_available(self) -> None:
        """Publish, oldest first, until nothing is left to publish; retry with backoff."""
        backoff = delays()
        failing = False
        while True:
            entry, from_memory = self._next()
            if entry is None:
                return
            done = False
            try:
                await self._publish(entry)
                done = True
            except PUBLISH_ERRORS as exc:
                if not failing:
                    log.warning(
                        "publishing results failed; they wait in the spool",
                        extra={"error": repr(exc), "buffered": self.buffered},
                    )
                failing = True
            finally:
                if from_memory and not done:
                    self._sealed.appendleft(entry)
            if not done:
                await asyncio.sleep(next(backoff))
                continue
            if from_memory:
                self._held -= entry.results
            else:
                self._spool.confirm(entry)
            self.published_results += entry.results
            self.published_batches += 1
            if failing:
                log.warning("publishing results again", extra={"buffered": self.buffered})
                failing = False
                backoff = delays()

    async def _ready_channel(self) -> aiormq.abc.AbstractChannel:
        channel = await self._link.channel()
        if channel is not self._declared_on:
            # The queue must exist even if no writer has started yet.
            await declare_results(channel, self._topology)
            self._declared_on = channel
        return channel

    async def _publish(self, entry: Entry) -> None:
        channel = await self._ready_channel()
        batch_id = str(uuid.UUID(bytes=entry.batch_id))
        await channel.basic_publish(
            entry.payload,
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
        """After run() is cancelled: spool what is held, then publish for at most
        `timeout` seconds; what the broker did not take stays in the spool."""
        try:
            async with asyncio.timeout(timeout):
                if self._writing is not None:
                    await asyncio.wait({self._writing})  # an append run() was cancelled in
                self._seal()
                await self._spool_sealed()
                await self._publish_available()
        except TimeoutError:
            level = logging.ERROR if self._held else logging.WARNING
            log.log(
                level,
                "results not published before shutdown",
                extra={"spooled": self._spool.results, "lost_from_memory": self._held},
            )
        finally:
            self._spool.close()
        log.info(
            "publisher closed",
            extra={
                "published_results": self.published_results,
                "published_batches": self.published_batches,
                "dropped_results": self.dropped_results,
                "unpublished": self.buffered,
                "spooled": self._spool.results,
            },
        )

    def release(self) -> None:
        """Let go of the spool without publishing (a prober that failed to start)."""
        self._spool.close()
