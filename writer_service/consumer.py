"""The writer: consume result batches, store them, and give every message a fate.

Fates: stored or duplicate -> ack after the commit holding its rows; malformed
or unstorable -> published to the dead-letter exchange with a reason, acked
once that publish is confirmed; database trouble -> nack with requeue, stop
consuming and wait until the database answers, so the queue holds the results.

Results older than the dedup window allows (writer_service/store.py,
LATE_MARGIN) are refused with the reason `too_late`: a message holding only
those is dead-lettered as it came; a message holding some is split, its
too-late part dead-lettered as a batch of its own (a derived id, the original
in the batch-id header) before the rest is stored under the original id. A
redelivery after a failed write may dead-letter that part again (the same
message id): the dead-letter queue gets it at least once, pings get it never.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

import aiormq.abc
import asyncpg
from pamqp import commands as spec

from shared.backoff import delays, retry
from shared.broker import TRANSIENT_BROKER_ERRORS, BrokerLink, declare_results
from shared.codec import ResultBatch, decode_batch, encode_batch
from shared.constants import (
    BATCH_ID_HEADER,
    CONTENT_TYPE,
    MAX_RESULTS_MESSAGE_BYTES,
    REASON_HEADER,
    Topology,
)
from shared.db import TRANSIENT_DB_ERRORS
from shared.errors import MalformedMessage
from writer_service.rows import batch_uuid, split_late
from writer_service.store import PingStore, too_late_reason

log = logging.getLogger(__name__)
T = TypeVar("T")

Message = aiormq.abc.DeliveredMessage
Decoded = list[tuple[Message, ResultBatch]]
PRUNE_EVERY_S = 3600.0
# Messages written per transaction at most: one commit for several batches.
DEFAULT_MAX_GROUP = 8


@dataclass(slots=True)
class WriterStats:
    batches: int = 0  # batches stored
    rows: int = 0  # ping rows inserted
    addresses: int = 0  # hostname resolution records stored
    details: int = 0  # tcp/http probe detail rows stored
    duplicates: int = 0  # batches already stored before
    dead_lettered: int = 0  # messages sent to the dead-letter queue
    too_late: int = 0  # pings refused as older than the dedup window
    write_failures: int = 0  # groups nacked back to the queue

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class Writer:
    def __init__(
        self,
        store: PingStore,
        link: BrokerLink,
        topology: Topology,
        *,
        max_group: int = DEFAULT_MAX_GROUP,
        max_message_bytes: int = MAX_RESULTS_MESSAGE_BYTES,
    ) -> None:
        self._store = store
        self._link = link
        self._topology = topology
        self._max_group = max_group
        self._max_message_bytes = max_message_bytes
        self._failures = 0  # consecutive failed writes, for the backoff
        self.stats = WriterStats()

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set; finish what was delivered, then return."""
        pruner = asyncio.create_task(self._prune_forever(), name="prune-batch-ids")
        try:
            await self._consume(stop)
        finally:
            pruner.cancel()
            await asyncio.gather(pruner, return_exceptions=True)

    async def _consume(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            channel = await _unless_stopped(self._link.channel(), stop)
            if channel is None:
                return
            try:
                await declare_results(channel, self._topology)
                await self._session(channel, stop)
            except TRANSIENT_BROKER_ERRORS as exc:
                log.warning("lost RabbitMQ, reconnecting", extra={"error": repr(exc)})

    async def _session(self, channel: aiormq.abc.AbstractChannel, stop: asyncio.Event) -> None:
        """Consume on one channel until stopped; raises when the channel dies."""
        inbox: asyncio.Queue[Message] = asyncio.Queue()
        closing = channel.closing
        try:
            tag = await self._start_consuming(channel, inbox)
            while True:
                first = await _next_message(inbox, closing, stop)
                if first is None:
                    break
                if await self._handle(channel, [first, *_drain(inbox, self._max_group - 1)]):
                    continue
                # The database failed: hand back what we hold and wait for it.
                await self._stop_consuming(channel, tag)
                await self._nack(channel, _drain(inbox))
                if not await self._await_database(stop):
                    return
                tag = await self._start_consuming(channel, inbox)
            await self._stop_consuming(channel, tag)
            # Deliveries that arrived before the cancel took effect are ours to finish.
            held = _drain(inbox)
            if held:
                await self._handle(channel, held)
        finally:
            closing.cancel()

    async def _start_consuming(
        self, channel: aiormq.abc.AbstractChannel, inbox: asyncio.Queue[Message]
    ) -> str:
        async def deliver(message: Message) -> None:
            inbox.put_nowait(message)

        ok = await channel.basic_consume(self._topology.results_queue, deliver)
        assert ok.consumer_tag is not None
        return ok.consumer_tag

    async def _stop_consuming(self, channel: aiormq.abc.AbstractChannel, tag: str) -> None:
        await channel.basic_cancel(tag)
        await asyncio.sleep(0)  # let deliveries read before the cancel-ok reach the inbox

    async def _handle(self, channel: aiormq.abc.AbstractChannel, group: list[Message]) -> bool:
        """Give each message its fate; False when the database failed (group nacked)."""
        decoded: Decoded = []
        for message in group:
            try:
                batch = decode_batch(message.body, self._max_message_bytes)
            except MalformedMessage as exc:
                await self._dead_letter(channel, message, str(exc))
                continue
            decoded.append((message, batch))
        if not decoded:
            return True
        try:
            oldest = await self._store.oldest_accepted()
        except Exception as exc:
            return await self._requeue(channel, decoded, exc)
        return await self._store_group(channel, await self._refuse_late(channel, decoded, oldest))

    async def _store_group(self, channel: aiormq.abc.AbstractChannel, decoded: Decoded) -> bool:
        if not decoded:
            return True
        try:
            outcome = await self._store.write([batch for _, batch in decoded])
        except asyncpg.DataError as exc:
            return await self._isolate_rejected(channel, decoded, exc)
        except Exception as exc:
            return await self._requeue(channel, decoded, exc)
        self._failures = 0
        unclaimed = set(outcome.fresh)
        for message, batch in decoded:
            if batch.batch_id in unclaimed:
                unclaimed.discard(batch.batch_id)
                self.stats.batches += 1
            else:
                self.stats.duplicates += 1
            await channel.basic_ack(_tag(message))
        self.stats.rows += outcome.rows
        self.stats.addresses += outcome.addresses
        self.stats.details += outcome.details
        return True

    async def _requeue(
        self, channel: aiormq.abc.AbstractChannel, decoded: Decoded, exc: Exception
    ) -> bool:
        level = logging.WARNING if isinstance(exc, TRANSIENT_DB_ERRORS) else logging.ERROR
        log.log(level, "write failed, results requeued", extra={"error": repr(exc)})
        self.stats.write_failures += 1
        self._failures += 1
        await self._nack(channel, [message for message, _ in decoded])
        return False

    async def _isolate_rejected(
        self, channel: aiormq.abc.AbstractChannel, decoded: Decoded, exc: asyncpg.DataError
    ) -> bool:
        """The database refused a value: find the message that holds it, store the rest."""
        if len(decoded) == 1:
            await self._dead_letter(channel, decoded[0][0], f"database rejected: {exc}")
            return True
        for position, pair in enumerate(decoded):
            if not await self._store_group(channel, [pair]):
                await self._nack(channel, [m for m, _ in decoded[position + 1 :]])
                return False
        return True

    async def _refuse_late(
        self, channel: aiormq.abc.AbstractChannel, decoded: Decoded, oldest_us: int
    ) -> Decoded:
        """Dead-letter what is timed before `oldest_us`; return what is left to store."""
        kept: Decoded = []
        for message, batch in decoded:
            fresh, late = split_late(batch, oldest_us)
            if late.empty:
                kept.append((message, batch))
                continue
            reason = too_late_reason(batch, late, oldest_us, self._store.dedup_window)
            self.stats.too_late += len(late)
            if fresh.empty:
                await self._dead_letter(channel, message, reason)
            elif await self._dead_letter_part(channel, message, batch, late, reason):
                kept.append((message, fresh))
        return kept

    async def _dead_letter_part(
        self,
        channel: aiormq.abc.AbstractChannel,
        message: Message,
        whole: ResultBatch,
        part: ResultBatch,
        reason: str,
    ) -> bool:
        """Dead-letter `part` of `message` (decoded: `whole`) as a batch of its own.
        False when the broker did not confirm it: the whole message then goes by the
        queue's own dead-lettering (without our reason), and nothing of it is stored."""
        body, part_id = encode_batch(part), str(batch_uuid(part))
        headers = {BATCH_ID_HEADER: str(batch_uuid(whole))}
        if await self._publish_dead(channel, message, reason, body, part_id, CONTENT_TYPE, headers):
            return True
        await channel.basic_reject(_tag(message), requeue=False)
        return False

    async def _dead_letter(
        self, channel: aiormq.abc.AbstractChannel, message: Message, reason: str
    ) -> None:
        props = message.header.properties
        if await self._publish_dead(
            channel, message, reason, message.body, props.message_id, props.content_type, {}
        ):
            await channel.basic_ack(_tag(message))
        else:
            # Not confirmed: the queue's own dead-lettering keeps it (without our reason).
            await channel.basic_reject(_tag(message), requeue=False)

    async def _publish_dead(
        self,
        channel: aiormq.abc.AbstractChannel,
        message: Message,
        reason: str,
        body: bytes,
        message_id: str | None,
        content_type: str | None,
        headers: dict[str, str],
    ) -> bool:
        """Publish `body` to the dead-letter exchange with `message`'s headers, the
        reason and `headers`; True once the broker confirmed it."""
        confirm = await channel.basic_publish(
            body,
            exchange=self._topology.dead_exchange,
            routing_key="",
            properties=spec.Basic.Properties(
                headers={
                    **(message.header.properties.headers or {}),
                    REASON_HEADER: reason[:1000],
                    **headers,
                },
                message_id=message_id,
                content_type=content_type,
                delivery_mode=2,
            ),
        )
        log.warning("message dead-lettered", extra={"reason": reason, "message_id": message_id})
        self.stats.dead_lettered += 1
        return isinstance(confirm, spec.Basic.Ack)

    async def _nack(self, channel: aiormq.abc.AbstractChannel, messages: list[Message]) -> None:
        for message in messages:
            await channel.basic_nack(_tag(message), requeue=True)

    async def _await_database(self, stop: asyncio.Event) -> bool:
        """Back off, then wait until the database answers; False if stopped meanwhile."""
        pause = _nth_delay(self._failures)
        waited = await _unless_stopped(asyncio.sleep(pause, result=True), stop)
        if waited is None:
            return False
        answered = await _unless_stopped(
            retry(
                self._store.ping,
                what="reach PostgreSQL",
                retry_on=(*TRANSIENT_DB_ERRORS, asyncpg.PostgresError),
            ),
            stop,
        )
        if answered is None:
            return False
        log.warning("PostgreSQL answers again, resuming")
        return True

    async def _prune_forever(self) -> None:
        while True:
            try:
                deleted = await self._store.prune_batch_ids()
                log.info("pruned batch ids", extra={"deleted": deleted})
            except (*TRANSIENT_DB_ERRORS, asyncpg.PostgresError) as exc:
                log.warning("pruning batch ids failed", extra={"error": repr(exc)})
            await asyncio.sleep(PRUNE_EVERY_S)


def _tag(message: Message) -> int:
    tag = message.delivery_tag
    assert tag is not None, "a consumed message always has a delivery tag"
    return tag


def _drain(inbox: asyncio.Queue[Message], limit: int | None = None) -> list[Message]:
    taken: list[Message] = []
    while not inbox.empty() and (limit is None or len(taken) < limit):
        taken.append(inbox.get_nowait())
    return taken


def _nth_delay(failures: int) -> float:
    for n, delay in enumerate(delays(base=0.2)):
        if n + 1 >= failures:
            return delay
    raise AssertionError("unreachable")


async def _next_message(
    inbox: asyncio.Queue[Message], closing: asyncio.Future[object], stop: asyncio.Event
) -> Message | None:
    """The next delivery; None once `stop` is set; raises if the channel closed."""
    if not inbox.empty():
        return inbox.get_nowait()
    getter = asyncio.ensure_future(inbox.get())
    stopper = asyncio.ensure_future(stop.wait())
    try:
        waiting: set[asyncio.Future[Any]] = {getter, stopper, closing}
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    finally:
        getter.cancel()
        stopper.cancel()
    if getter.done() and not getter.cancelled():
        return getter.result()
    if closing.done():
        exc = None if closing.cancelled() else closing.exception()
        raise aiormq.exceptions.ChannelInvalidStateError(f"channel closed: {exc!r}")
    return None


async def _unless_stopped(awaitable: Awaitable[T], stop: asyncio.Event) -> T | None:
    """Await `awaitable` unless `stop` is set first (then cancel it and return None)."""
    task = asyncio.ensure_future(awaitable)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    return task.result() if task.done() and not task.cancelled() else None
