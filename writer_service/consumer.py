"""The writer: consume result batches, store them, and give every message a fate.

Fates: stored or duplicate -> ack after the commit holding its rows; not a
results message (garbage, too big, another version, a wrong shape) ->
published to the dead-letter exchange with a reason, acked once that publish
is confirmed; database trouble -> nack with requeue, stop consuming and wait
until the database answers, so the queue holds the results.

Results a message holds that cannot be stored are refused one by one, not
with the message (writer_service/triage.py): values no table can hold
(`invalid_values`, each with its reason) and results older than the dedup
window allows (`too_late`, store.py LATE_MARGIN). Each refused kind is
dead-lettered as a batch of its own (a derived id, the original in the
batch-id header) before the rest is stored under the original id; a message
with nothing left to store goes as it came. A redelivery after a failed write
may dead-letter a part again (the same message id): the dead-letter queue
gets it at least once, pings never.

The broker may refuse a dead letter: a nack (a dead-letter queue at its
`max-length` with `overflow: reject-publish`) or a return (no queue bound to
the dead-letter exchange). The message is then parked: held unacked, nothing
of it stored, and tried again after a capped backoff, once the topology is
declared again (a deleted dead-letter queue comes back); the other messages
flow meanwhile, until parked ones fill the prefetch. Rejecting it instead
would hand it to the queue's own dead-lettering, which drops it when the
dead-letter queue refuses too. No confirm in time (a broker blocking
publishers) and a channel the broker closed (the dead-letter exchange
deleted: 404) end the session like a lost connection: every message not
acked goes back to the queue, and the writer connects and declares again.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import aiormq.abc
import asyncpg
from aiormq.exceptions import ChannelClosed
from pamqp import commands as spec

from shared.backoff import delays, retry
from shared.broker import TRANSIENT_BROKER_ERRORS, BrokerLink, declare_results
from shared.codec import ResultBatch, decode_results, derived_batch_id, encode_batch
from shared.constants import (
    BATCH_ID_HEADER,
    CONTENT_TYPE,
    MAX_RESULTS_MESSAGE_BYTES,
    REASON_CODE_HEADER,
    REASON_HEADER,
    DeadReason,
    Topology,
)
from shared.db import TRANSIENT_DB_ERRORS
from shared.dead_letters import ReasonTally
from shared.errors import MalformedMessage
from shared.validation import Invalid
from writer_service.store import PingStore
from writer_service.triage import DeadPart, triage

log = logging.getLogger(__name__)
T = TypeVar("T")

Message = aiormq.abc.DeliveredMessage
PRUNE_EVERY_S = 3600.0
COUNT_EVERY_S = 1.0
STOP_COUNT_S = 2.0  # at most this long for the last count on the way out
# A dead letter the broker has not confirmed in this time: the link is dropped
# and made again (a broker blocking publishers, a stalled node).
DEAD_LETTER_CONFIRM_S = 30.0
# What ends a session on a channel and starts another: a lost connection, or a
# channel the broker closed (a deleted exchange: 404), made again alike.
LOST_SESSION: tuple[type[BaseException], ...] = (*TRANSIENT_BROKER_ERRORS, ChannelClosed)
# Messages written per transaction at most: one commit for several batches.
DEFAULT_MAX_GROUP = 8


class DeadLetterRefused(Exception):
    """The broker did not take a dead letter (nack, return, or another answer)."""


@dataclass(slots=True)
class WriterStats:
    batches: int = 0  # batches stored
    rows: int = 0  # ping rows inserted
    addresses: int = 0  # hostname resolution records stored
    details: int = 0  # tcp/http probe detail rows stored
    duplicates: int = 0  # batches already stored before
    dead_lettered: int = 0  # messages sent to the dead-letter queue
    invalid: int = 0  # pings refused for values no table can hold
    too_late: int = 0  # pings refused as older than the dedup window
    write_failures: int = 0  # groups nacked back to the queue
    dead_letter_refused: int = 0  # dead letters the broker did not take (message held)
    sessions_lost: int = 0  # broker connections or channels lost and made again

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
        dead_letter_timeout: float = DEAD_LETTER_CONFIRM_S,
    ) -> None:
        self._store = store
        self._link = link
        self._topology = topology
        self._max_group = max_group
        self._max_message_bytes = max_message_bytes
        self._dead_letter_timeout = dead_letter_timeout
        self._failures = 0  # consecutive failed writes, for the backoff
        self._refusals = 0  # consecutive refused dead letters, for the backoff
        self._broker_failures = 0  # consecutive lost sessions, for the backoff
        self._held: dict[int, Message] = {}  # the group in hand, until each has its fate
        self._parked: list[Message] = []  # refused dead letters' messages, held to try again
        self._retry_at = 0.0  # loop time to try the parked ones again
        self._tally = ReasonTally()  # dead letters not yet counted in the database
        self.stats = WriterStats()

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set; finish what was delivered, then return."""
        chores = {
            asyncio.create_task(self._prune_forever(), name="prune-batch-ids"),
            asyncio.create_task(self._count_forever(), name="count-dead-letters"),
        }
        try:
            await self._consume(stop)
        finally:
            for chore in chores:
                chore.cancel()
            await asyncio.gather(*chores, return_exceptions=True)
            await asyncio.shield(self._count_dead_letters(timeout=STOP_COUNT_S))

    async def _consume(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            channel = await _unless_stopped(self._link.channel(), stop)
            if channel is None:
                return
            try:
                await declare_results(channel, self._topology)
                await self._session(channel, stop)
            except LOST_SESSION as exc:
                # Dropping the connection hands every delivery not acked back to the queue.
                log.warning("lost RabbitMQ, reconnecting", extra={"error": repr(exc)})
                await self._link.close()
                self.stats.sessions_lost += 1
                self._broker_failures += 1
                pause = asyncio.sleep(_nth_delay(self._broker_failures), result=True)
                if await _unless_stopped(pause, stop) is None:
                    return

    async def _session(self, channel: aiormq.abc.AbstractChannel, stop: asyncio.Event) -> None:
        """Consume on one channel until stopped; raises when the channel dies."""
        inbox: asyncio.Queue[Message] = asyncio.Queue()
        closing = channel.closing
        try:
            tag = await self._start_consuming(channel, inbox)
            self._broker_failures = 0
            while not stop.is_set():
                if self._parked and self._retry_in() == 0:
                    # A dead-letter queue or binding someone deleted comes back.
                    await declare_results(channel, self._topology)
                    group, self._parked = self._parked, []
                else:
                    first = await _next_message(inbox, closing, stop, self._retry_in())
                    if first is None:
                        continue  # stopped, or time to try the parked ones again
                    group = [first, *_drain(inbox, self._max_group - 1)]
                if await self._handle(channel, group):
                    continue
                # The database failed: hand back what we hold and wait for it.
                await self._stop_consuming(channel, tag)
                await self._nack(channel, [*_drain(inbox), *self._parked])
                self._parked = []
                if not await self._await_database(stop):
                    return
                tag = await self._start_consuming(channel, inbox)
            await self._stop_consuming(channel, tag)
            # Deliveries that arrived before the cancel took effect are ours to finish.
            held = _drain(inbox)
            if held:
                await self._handle(channel, held)
            await self._nack(channel, self._parked)
        finally:
            # On a lost channel the broker takes back what we held.
            self._parked = []
            closing.cancel()

    def _retry_in(self) -> float | None:
        """Seconds until the parked messages are tried again (None: none parked)."""
        if not self._parked:
            return None
        return max(0.0, self._retry_at - asyncio.get_running_loop().time())

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
        """Give each message of `group` its fate; False when the database failed
        (what had no fate yet is back in the queue)."""
        self._held = {_tag(message): message for message in group}
        ok = await self._settle(channel, group)
        left = list(self._held.values())
        if left:
            if ok:
                log.error("messages left without a fate, requeued", extra={"count": len(left)})
            await self._nack(channel, left)
        return ok

    async def _settle(self, channel: aiormq.abc.AbstractChannel, group: list[Message]) -> bool:
        decoded: list[tuple[Message, ResultBatch, Invalid | None]] = []
        for message in group:
            try:
                batch, invalid = decode_results(message.body, self._max_message_bytes)
            except MalformedMessage as exc:
                whole = DeadPart(DeadReason(exc.code), str(exc), 0)
                if await self._give_dead(channel, message, [whole]):
                    await self._ack(channel, message)
                continue
            decoded.append((message, batch, invalid))
        if not decoded:
            return True
        try:
            oldest = await self._store.oldest_accepted()
        except Exception as exc:
            return self._write_failed(exc)
        keep: list[tuple[Message, ResultBatch]] = []
        for message, batch, invalid in decoded:
            plan = triage(batch, invalid, oldest, self._store.dedup_window)
            if not await self._give_dead(channel, message, plan.dead, batch.batch_id):
                continue
            if plan.keep is None:
                await self._ack(channel, message)
            else:
                keep.append((message, plan.keep))
        return await self._store_group(channel, keep)

    async def _store_group(
        self, channel: aiormq.abc.AbstractChannel, decoded: list[tuple[Message, ResultBatch]]
    ) -> bool:
        if not decoded:
            return True
        try:
            outcome = await self._store.write([batch for _, batch in decoded])
        except asyncpg.DataError as exc:
            return await self._isolate_rejected(channel, decoded, exc)
        except Exception as exc:
            return self._write_failed(exc)
        self._failures = 0
        unclaimed = set(outcome.fresh)
        for message, batch in decoded:
            if batch.batch_id in unclaimed:
                unclaimed.discard(batch.batch_id)
                self.stats.batches += 1
            else:
                self.stats.duplicates += 1
            await self._ack(channel, message)
        self.stats.rows += outcome.rows
        self.stats.addresses += outcome.addresses
        self.stats.details += outcome.details
        return True

    def _write_failed(self, exc: Exception) -> bool:
        level = logging.WARNING if isinstance(exc, TRANSIENT_DB_ERRORS) else logging.ERROR
        log.log(level, "write failed, results requeued", extra={"error": repr(exc)})
        self.stats.write_failures += 1
        self._failures += 1
        return False

    async def _isolate_rejected(
        self,
        channel: aiormq.abc.AbstractChannel,
        decoded: list[tuple[Message, ResultBatch]],
        exc: asyncpg.DataError,
    ) -> bool:
        """The database refused a value the codec let through: find the message that
        holds it, dead-letter what it had to store (a part: its own refused parts are
        already gone), store the rest."""
        if len(decoded) == 1:
            message, batch = decoded[0]
            code = DeadReason.DATABASE_REJECTED
            part = DeadPart(
                code,
                f"{code}: {exc}",
                len(batch),
                encode_batch(batch),
                derived_batch_id(batch.batch_id, code),
            )
            if await self._give_dead(channel, message, [part], batch.batch_id):
                await self._ack(channel, message)
            return True
        for pair in decoded:
            if not await self._store_group(channel, [pair]):
                return False
        return True

    async def _give_dead(
        self,
        channel: aiormq.abc.AbstractChannel,
        message: Message,
        parts: Sequence[DeadPart],
        of_batch: bytes | None = None,
    ) -> bool:
        """Dead-letter `parts` of `message`; False when the broker refused one: the
        message is then parked (held unacked, tried again after a backoff)."""
        try:
            for part in parts:
                await self._dead_letter(channel, message, part, of_batch)
        except DeadLetterRefused as exc:
            self._refusals += 1
            self.stats.dead_letter_refused += 1
            delay = _nth_delay(self._refusals)
            self._retry_at = asyncio.get_running_loop().time() + delay
            self._held.pop(_tag(message), None)
            self._parked.append(message)
            log.error(
                "the broker refused a dead letter; its message is held and tried again",
                extra={
                    "error": str(exc),
                    "dead_queue": self._topology.dead_queue,
                    "parked": len(self._parked),
                    "retry_in": round(delay, 2),
                },
            )
            return False
        return True

    async def _dead_letter(
        self,
        channel: aiormq.abc.AbstractChannel,
        message: Message,
        part: DeadPart,
        of_batch: bytes | None = None,
    ) -> None:
        """Publish `part` of `message` (the whole message when the part has no body)
        to the dead-letter exchange, with `message`'s headers and the reason; return
        once the broker confirmed it, raise DeadLetterRefused if it did not."""
        props = message.header.properties
        headers: dict[str, Any] = {
            **(props.headers or {}),
            REASON_HEADER: part.reason[:1000],
            REASON_CODE_HEADER: part.code.value,
        }
        if part.body is None:
            body, message_id, content_type = message.body, props.message_id, props.content_type
        else:
            assert part.batch_id is not None and of_batch is not None
            body, content_type = part.body, CONTENT_TYPE
            message_id = str(uuid.UUID(bytes=part.batch_id))
            headers[BATCH_ID_HEADER] = str(uuid.UUID(bytes=of_batch))
        try:
            confirm = await channel.basic_publish(
                body,
                exchange=self._topology.dead_exchange,
                routing_key="",
                properties=spec.Basic.Properties(
                    headers=headers,
                    message_id=message_id,
                    content_type=content_type,
                    timestamp=datetime.now(UTC),
                    delivery_mode=2,
                ),
                mandatory=True,  # no queue bound: returned, not silently dropped
                timeout=self._dead_letter_timeout,
            )
        except aiormq.exceptions.PublishError as exc:
            raise DeadLetterRefused(f"returned unroutable: {exc}") from exc
        except aiormq.exceptions.DeliveryError as exc:
            raise DeadLetterRefused(f"nacked: {exc.frame!r}") from exc
        if not isinstance(confirm, spec.Basic.Ack):
            raise DeadLetterRefused(f"answered {confirm!r}")
        log.warning(
            "message dead-lettered",
            extra={"reason": part.reason[:1000], "code": part.code.value, "message_id": message_id},
        )
        self._refusals = 0
        self.stats.dead_lettered += 1
        if part.code is DeadReason.INVALID_VALUES:
            self.stats.invalid += part.pings
        elif part.code is DeadReason.TOO_LATE:
            self.stats.too_late += part.pings
        self._tally.add(part.code.value, part.pings, part.reason)

    async def _ack(self, channel: aiormq.abc.AbstractChannel, message: Message) -> None:
        await channel.basic_ack(_tag(message))
        self._held.pop(_tag(message), None)

    async def _nack(self, channel: aiormq.abc.AbstractChannel, messages: list[Message]) -> None:
        for message in messages:
            await channel.basic_nack(_tag(message), requeue=True)
            self._held.pop(_tag(message), None)

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

    async def _count_forever(self) -> None:
        while True:
            await asyncio.sleep(COUNT_EVERY_S)
            await self._count_dead_letters()

    async def _count_dead_letters(self, timeout: float = 10.0) -> None:
        """Add the dead letters counted since the last time to the database's counts;
        kept for the next time when it does not answer."""
        if not self._tally:
            return
        taken = self._tally.take()
        try:
            await asyncio.wait_for(self._store.count_dead_letters(taken), timeout)
        except (*TRANSIENT_DB_ERRORS, asyncpg.PostgresError) as exc:
            self._tally.put_back(taken)
            log.warning("counting dead letters failed", extra={"error": repr(exc)})


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
    inbox: asyncio.Queue[Message],
    closing: asyncio.Future[object],
    stop: asyncio.Event,
    timeout: float | None = None,
) -> Message | None:
    """The next delivery; None once `stop` is set or after `timeout` seconds (None:
    no limit); raises if the channel closed."""
    if not inbox.empty():
        return inbox.get_nowait()
    getter = asyncio.ensure_future(inbox.get())
    stopper = asyncio.ensure_future(stop.wait())
    try:
        waiting: set[asyncio.Future[Any]] = {getter, stopper, closing}
        await asyncio.wait(waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
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
