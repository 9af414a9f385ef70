"""`pingtrack dead-letters list|show|replay`: the results the writers refused.

Over AMQP only (shared/dead_letters.py): looking leaves every message where
it was; replay publishes the chosen ones back to the results queue and
removes each once the broker confirmed its copy. The writer then takes them
like any batch, under the batch id each carries: replayed twice, stored once.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, NoReturn, TypeVar

import aiormq
import aiormq.abc
import msgpack
import typer
from rich.console import Console
from rich.table import Table

from shared.broker import TRANSIENT_BROKER_ERRORS, BrokerLink
from shared.codec import decode_results
from shared.constants import Topology
from shared.dead_letters import DeadLetter, look, replay
from shared.errors import MalformedMessage
from shared.validation import TS_MAX, TS_MIN

T = TypeVar("T")
BROKER_TIMEOUT_S = 10.0
BROKER_ERRORS: tuple[type[BaseException], ...] = (
    *TRANSIENT_BROKER_ERRORS,
    aiormq.exceptions.AMQPError,
)

dead_letters_app = typer.Typer(
    no_args_is_help=True, help="Look at and replay results the writers refused."
)
console = Console()
err_console = Console(stderr=True)


def _with_channel(work: Callable[[aiormq.abc.AbstractChannel, Topology], Awaitable[T]]) -> T:
    from pingtrack.cli import settings_or_exit  # cli.py imports this module

    settings = settings_or_exit()
    topology = Topology(settings.amqp_prefix)

    async def main() -> T:
        link = BrokerLink(settings.amqp_url, publisher_confirms=True)
        try:
            return await work(await link.channel(timeout=BROKER_TIMEOUT_S), topology)
        finally:
            await link.close()

    try:
        return asyncio.run(main())
    except aiormq.exceptions.ChannelNotFoundEntity as exc:
        _fail(f"no queue {topology.dead_queue} (no writer or prober has started yet)", exc)
    except BROKER_ERRORS as exc:
        _fail(f"RabbitMQ: {exc!r}", exc)


def _fail(text: str, exc: BaseException | None = None, code: int = 1) -> NoReturn:
    err_console.print(f"[red]error:[/red] {text}", highlight=False)
    raise typer.Exit(code) from exc


def _when(at: datetime | None) -> str:
    if at is None:
        return ""
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).isoformat(timespec="seconds")


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def letters_table(letters: list[DeadLetter], depth: int, queue: str) -> Table:
    table = Table(title=f"{queue}: {depth} dead letters, the first {len(letters)}")
    for column in ("#", "id", "reason code", "pings", "dead-lettered", "from batch", "reason"):
        table.add_column(column, overflow="fold" if column == "id" else "ellipsis")
    for letter in letters:
        table.add_row(
            str(letter.position),
            letter.message_id,
            letter.code,
            "" if letter.pings is None else str(letter.pings),
            _when(letter.at),
            letter.of_batch or "",
            _short(letter.reason, 90),
        )
    return table


@dead_letters_app.command("list")
def list_command(
    limit: Annotated[int, typer.Option(min=1, help="show at most this many, from the head")] = 50,
) -> None:
    """The dead-letter queue from its head: id, reason, pings; counts by reason code."""

    async def work(channel: aiormq.abc.AbstractChannel, topology: Topology) -> None:
        depth, letters = await look(channel, topology, limit)
        console.print(letters_table(letters, depth, topology.dead_queue))
        by_code = Counter(letter.code for letter in letters)
        if by_code:
            counts = ", ".join(f"{code} {n}" for code, n in by_code.most_common())
            console.print(f"by reason code (of these {len(letters)}): {counts}", highlight=False)

    _with_channel(work)


def _rows(letter: DeadLetter, limit: int) -> Table | None:
    """The pings the body holds, raw, with the reason the writer gave each (if any)."""
    try:
        data = msgpack.unpackb(letter.body, raw=False, strict_map_key=False)
    except Exception:  # garbage: no rows to show
        return None
    columns = ("t", "ts", "rtt", "ttl", "hops")
    if not isinstance(data, dict) or not all(isinstance(data.get(c), list) for c in columns):
        return None
    why = data.get("why")
    reasons = why.get("t") if isinstance(why, dict) else None
    table = Table(title=f"pings (the first {limit})")
    for column in ("target", "sent", "rtt µs", "ttl", "hops", "reason"):
        table.add_column(column)
    rows = zip(*(data[c] for c in columns), strict=False)
    for i, (target, ts, rtt, ttl, hops) in enumerate(rows):
        if i == limit:
            break
        reason = reasons[i] if isinstance(reasons, list) and i < len(reasons) else ""
        table.add_row(_raw(target), _ts(ts), _raw(rtt), _raw(ttl), _raw(hops), reason)
    return table


def _raw(value: object) -> str:
    return _short(repr(value), 30)


def _ts(value: object) -> str:
    """A send time as the time it is, when it is one; else the raw value."""
    if type(value) is int and TS_MIN <= value <= TS_MAX:
        return datetime.fromtimestamp(value / 1e6, UTC).isoformat(timespec="microseconds")
    return _raw(value)


def _verdict(letter: DeadLetter) -> str:
    """What today's codec makes of the body (a too-late rule needs the database: not here)."""
    try:
        batch, invalid = decode_results(letter.body)
    except MalformedMessage as exc:
        return f"still not a results message ({exc.code}): {exc}"
    if invalid is None:
        return f"all {len(batch)} pings decode as storable now"
    return f"{len(batch)} pings storable now, {len(invalid)} still refused: {invalid.reasons()[0]}"


@dead_letters_app.command("show")
def show_command(
    key: Annotated[str, typer.Argument(help="message id, batch id, or the batch it came from")],
    rows: Annotated[int, typer.Option(min=0, help="pings to show of each")] = 20,
) -> None:
    """Every dead letter matching KEY: its headers, its reason, its pings."""

    async def work(channel: aiormq.abc.AbstractChannel, topology: Topology) -> list[DeadLetter]:
        _, found = await look(channel, topology, select=lambda letter: letter.matches(key))
        return found

    found = _with_channel(work)
    if not found:
        _fail(f"no dead letter matches {key}")
    for letter in found:
        console.rule(f"#{letter.position} {letter.message_id}")
        facts = {
            "reason code": letter.code,
            "reason": letter.reason,
            "batch id": letter.batch_id or "",
            "from batch": letter.of_batch or "",
            "dead-lettered": _when(letter.at),
            "pings": "" if letter.pings is None else str(letter.pings),
            "bytes": str(len(letter.body)),
            "now": _verdict(letter),
        }
        extra = {k: v for k, v in letter.headers.items() if k.startswith("x-") and k not in facts}
        for name, value in [*facts.items(), *extra.items()]:
            console.print(f"[bold]{name}:[/bold] {value}", highlight=False)
        table = _rows(letter, rows) if rows else None
        if table is not None:
            console.print(table)


@dead_letters_app.command("replay")
def replay_command(
    keys: Annotated[
        list[str] | None,
        typer.Argument(help="message ids, batch ids, or the batches they came from"),
    ] = None,
    reason: Annotated[
        str | None, typer.Option("--reason", help="only those of this reason code")
    ] = None,
    everything: Annotated[bool, typer.Option("--all", help="every dead letter")] = False,
) -> None:
    """Publish dead letters back to the results queue, once their cause is fixed.

    Each keeps its batch id: the writer stores it once however often it is
    replayed, and refuses again what is still refused (a dead letter again)."""
    wanted = set(keys or ())
    if not (wanted or reason or everything):
        _fail("say which: ids, --reason CODE, or --all", code=2)

    def select(letter: DeadLetter) -> bool:
        if wanted and not any(letter.matches(key) for key in wanted):
            return False
        return reason is None or letter.code == reason

    async def work(channel: aiormq.abc.AbstractChannel, topology: Topology) -> None:
        done = await replay(channel, topology, select)
        left = done.depth - len(done.letters)
        console.print(
            f"replayed {len(done.letters)} dead letters ({done.pings} pings)"
            f" to {topology.results_queue}; {left} left in {topology.dead_queue}",
            highlight=False,
        )
        for letter in done.letters:
            console.print(f"  {letter.message_id}  {letter.code}", highlight=False)
        if wanted and not done.letters:
            _fail("no dead letter matched")

    _with_channel(work)
