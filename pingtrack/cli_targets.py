"""Operator commands: `pingtrack target …` and `pingtrack pings ID`.

They call the same target operations as the REST API, with their own pool
and broker link, not over HTTP.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import NoReturn, TypeVar

import asyncpg
import typer
from rich.console import Console
from rich.table import Table

from api_service.results import pings
from api_service.targets import bulk, drafts
from api_service.targets.publisher import CommandPublisher
from api_service.targets.service import Target, Targets
from api_service.times import as_utc, iso
from shared.broker import BrokerLink
from shared.constants import Topology
from shared.db import TRANSIENT_DB_ERRORS, create_pool
from shared.errors import InvalidInput, PingtrackError
from shared.settings import Settings

T = TypeVar("T")
DB_CONNECT_TIMEOUT_S = 10.0

target_app = typer.Typer(no_args_is_help=True, help="Add, list and change tracked addresses.")
console = Console()
err_console = Console(stderr=True)


def _settings() -> Settings:
    from pingtrack.cli import settings_or_exit  # cli.py imports this module

    return settings_or_exit()


@dataclass
class _Session:
    pool: asyncpg.Pool
    targets: Targets
    publisher: CommandPublisher


@asynccontextmanager
async def _session(settings: Settings) -> AsyncIterator[_Session]:
    pool = await create_pool(settings, timeout=DB_CONNECT_TIMEOUT_S, min_size=1, max_size=2)
    broker = BrokerLink(settings.amqp_url)
    publisher = CommandPublisher(broker, Topology(settings.amqp_prefix))
    try:
        yield _Session(pool, Targets(pool, publisher, settings), publisher)
    finally:
        await broker.close()
        await pool.close()


def _call(work: Callable[[_Session], Awaitable[T]]) -> T:
    """Run one operation; turn every expected failure into a red line and an exit code."""
    settings = _settings()

    async def main() -> tuple[T, int]:
        async with _session(settings) as session:
            return await work(session), session.publisher.failed

    try:
        result, unpublished = asyncio.run(main())
    except InvalidInput as exc:
        _fail(str(exc), 2)
    except PingtrackError as exc:
        _fail(str(exc), 1)
    except (*TRANSIENT_DB_ERRORS, asyncpg.PostgresError) as exc:
        _fail(f"database: {exc}", 1)
    if unpublished:
        err_console.print(
            "[yellow]warning:[/yellow] saved, but the broker did not take the command; "
            "probers will pick the change up from the database"
        )
    return result


def _fail(message: str, code: int) -> NoReturn:
    err_console.print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(code)


# Pure formatting and parsing.

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    """'90s', '15m', '1h', '2d', '1w' as a timedelta."""
    match = _DURATION.match(text)
    if match is None:
        raise InvalidInput(f"duration {text!r} is not like 90s, 15m, 1h, 2d or 1w")
    return timedelta(seconds=float(match.group(1)) * _UNIT_S[match.group(2)])


def parse_time(text: str, option: str) -> datetime:
    try:
        return as_utc(datetime.fromisoformat(text))
    except ValueError:
        raise InvalidInput(f"{option} {text!r} is not an ISO 8601 time") from None


def ago(ts: datetime, now: datetime) -> str:
    seconds = max(0.0, (now - ts).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit} ago"
    return f"{int(seconds)}s ago"


def seconds(ms: int) -> str:
    return f"{ms / 1000:g}s"


def _last_ping(target: Target, now: datetime) -> tuple[str, str]:
    last = target.last_ping
    if last is None:
        return "never", ""
    rtt = "lost" if last.rtt_us is None else f"{last.rtt_us / 1000:.3f} ms"
    return ago(last.ts, now), rtt


_STATE_STYLE = {"active": "green", "paused": "yellow", "stopped": "dim", "deleted": "red"}


def _state(state: str) -> str:
    return f"[{_STATE_STYLE[state]}]{state}[/]"


def probed(target: Target) -> str:
    """What is probed, in a few words: '192.0.2.1', 'tcp db.example:5432', the URL."""
    p = target.probe
    if p.kind == "http":
        return f"{p.http_method} {p.url}"
    host = p.address or p.hostname or ""
    if p.family != "any":
        host += f" ({p.family})"
    return f"tcp {host}:{p.port}" if p.kind == "tcp" else host


def _show(target: Target, headline: str) -> None:
    now = datetime.now(UTC)
    seen, rtt = _last_ping(target, now)
    p = target.probe
    table = Table(show_header=False, box=None, title=headline, title_justify="left")
    table.add_row("id", str(target.id))
    table.add_row("kind", p.kind)
    table.add_row("probes", probed(target))
    if p.expect_status is not None or p.expect_body is not None:
        table.add_row("expects", f"{p.expect_status or 'any status'} {p.expect_body or ''}")
    table.add_row("name", target.name or "")
    table.add_row("tags", ", ".join(target.tags))
    table.add_row("state", _state(target.state))
    table.add_row("interval", seconds(target.interval_ms))
    table.add_row("timeout", seconds(target.timeout_ms))
    table.add_row("created", iso(target.created_at))
    table.add_row("stopped", "" if target.stopped_at is None else iso(target.stopped_at))
    table.add_row("last ping", f"{seen} {rtt}".strip())
    console.print(table)


# Commands.


def host_fields(host: str | None) -> dict[str, str]:
    """An IP literal goes in as address, anything else as hostname."""
    if host is None:
        return {}
    try:
        ipaddress.ip_address(host.strip())
    except ValueError:
        return {"hostname": host}
    return {"address": host}


TagOption = typer.Option(None, "--tag", help="a tag (repeat for several)")


@target_app.command("add")
def add(
    host: str | None = typer.Argument(None, help="IPv4/IPv6 address or hostname"),
    kind: str | None = typer.Option(None, "--kind", help="icmp (default), tcp, or http"),
    port: int | None = typer.Option(None, "--port", help="tcp: the port"),
    url: str | None = typer.Option(None, "--url", help="http: the URL (no host argument)"),
    family: str | None = typer.Option(None, "--family", help="hostnames: any, ipv4 or ipv6"),
    method: str | None = typer.Option(None, "--method", help="http: GET or HEAD"),
    expect_status: int | None = typer.Option(None, "--expect-status", help="http"),
    expect_body: str | None = typer.Option(None, "--expect-body", help="http: body substring"),
    name: str | None = typer.Option(None, "--name", help="a label for people"),
    interval: float | None = typer.Option(None, "--interval", help="seconds between probes"),
    timeout: float | None = typer.Option(None, "--timeout", help="seconds to wait for a reply"),
    tags: list[str] | None = TagOption,
) -> None:
    """Start tracking an address, a hostname or (--kind http --url) a URL."""
    fields = {
        "kind": kind or ("http" if url else None),
        "port": port,
        "url": url,
        "family": family,
        "http_method": method,
        "expect_status": expect_status,
        "expect_body": expect_body,
        "name": name,
        "interval_s": interval,
        "timeout_s": timeout,
        "tags": tags,
        **host_fields(host),
    }
    given = {k: v for k, v in fields.items() if v is not None}
    target = _call(lambda s: s.targets.create(**given))
    _show(target, f"added target {target.id}")


@target_app.command("list")
def list_targets(
    state: str | None = typer.Option(None, "--state", help="active|paused|stopped|deleted|all"),
    tags: list[str] | None = TagOption,
) -> None:
    """Targets with their state and last result (deleted ones only when asked);
    --tag keeps those carrying every given tag."""
    targets = _call(lambda s: s.targets.list(state, drafts.parse_tags(tags)))
    now = datetime.now(UTC)
    table = Table("id", "probes", "name", "state", "interval", "last ping", "rtt")
    for target in targets:
        seen, rtt = _last_ping(target, now)
        table.add_row(
            str(target.id),
            probed(target),
            target.name or "",
            _state(target.state),
            seconds(target.interval_ms),
            seen,
            rtt,
        )
    console.print(table)
    console.print(f"{len(targets)} target(s)")


@target_app.command("show")
def show(target_id: int = typer.Argument(..., metavar="ID")) -> None:
    """One target in full."""
    _show(_call(lambda s: s.targets.get(target_id)), f"target {target_id}")


def _transition(action: str, target_id: int) -> None:
    target = _call(lambda s: s.targets.transition(target_id, action))
    console.print(f"target {target.id} ({probed(target)}) is {_state(target.state)}")


def _by_id_or_tags(action: str, target_id: int | None, tags: list[str] | None) -> None:
    if (target_id is None) == (not tags):
        _fail(f"give a target ID or --tag to {action}, not both", 2)
    if target_id is not None:
        _transition(action, target_id)
        return
    changed = _call(lambda s: bulk.transition_by_tags(s.pool, s.publisher, action, tags or []))
    console.print(f"{len(changed)} target(s) {action}d: {', '.join(map(str, changed))}")


@target_app.command("pause")
def pause(
    target_id: int | None = typer.Argument(None, metavar="[ID]"),
    tags: list[str] | None = TagOption,
) -> None:
    """Stop probing for now (one target, or every active one with all --tag); resume picks up."""
    _by_id_or_tags("pause", target_id, tags)


@target_app.command("resume")
def resume(
    target_id: int | None = typer.Argument(None, metavar="[ID]"),
    tags: list[str] | None = TagOption,
) -> None:
    """Probe a paused target again (one, or every paused one with all --tag)."""
    _by_id_or_tags("resume", target_id, tags)


@target_app.command("stop")
def stop(target_id: int = typer.Argument(..., metavar="ID")) -> None:
    """End tracking for good; the history is kept."""
    _transition("stop", target_id)


@target_app.command("delete")
def delete(
    target_id: int = typer.Argument(..., metavar="ID"),
    purge: bool = typer.Option(False, "--purge", help="also delete every ping of it"),
    yes: bool = typer.Option(False, "--yes", "-y", help="do not ask"),
) -> None:
    """Delete a target (its history stays unless --purge)."""
    what = "and ALL its pings " if purge else ""
    if not yes and not typer.confirm(f"delete target {target_id} {what}?"):
        _fail("nothing deleted", 1)
    if purge:
        purged = _call(lambda s: s.targets.purge(target_id))
        pings_deleted = purged.rows_deleted.get("pings", 0)
        console.print(f"target {purged.id} purged with {pings_deleted} raw ping(s)")
    else:
        _transition("delete", target_id)


def pings_command(
    target_id: int = typer.Argument(..., metavar="ID"),
    since: str | None = typer.Option(None, "--since", help="e.g. 10m, 1h, 2d (default 1h)"),
    start: str | None = typer.Option(None, "--from", help="ISO 8601 start"),
    end: str | None = typer.Option(None, "--to", help="ISO 8601 end (default now)"),
    limit: int = typer.Option(50, "--limit", min=1, max=pings.MAX_LIMIT, help="newest N"),
    csv: bool = typer.Option(False, "--csv", help="the whole range as CSV on stdout"),
) -> None:
    """Raw pings of a target: the newest --limit of the range, or all of it with --csv."""
    try:
        if since is not None and start is not None:
            raise InvalidInput("give --since or --from, not both")
        lo = parse_time(start, "--from") if start else None
        hi = parse_time(end, "--to") if end else None
        if lo is None:
            lo = (hi or datetime.now(UTC)) - parse_duration(since or "1h")
        lo, hi = pings.time_range(lo, hi)
    except InvalidInput as exc:
        _fail(str(exc), 2)
    if csv:
        _call(lambda s: _write_csv(s.pool, target_id, lo, hi))
        return
    rows = _call(lambda s: pings.latest(s.pool, target_id, lo, hi, limit=limit))
    table = Table("ts (UTC)", "rtt ms", "lost", "hops", "ttl")
    for p in rows:
        table.add_row(
            iso(p.ts),
            "" if p.rtt_ms is None else f"{p.rtt_ms:.3f}",
            "[red]lost[/]" if p.lost else "",
            "" if p.hops is None else str(p.hops),
            "" if p.ttl is None else str(p.ttl),
        )
    console.print(table)
    console.print(f"{len(rows)} ping(s) from {iso(lo)} to {iso(hi)}")


async def _write_csv(pool: asyncpg.Pool, target_id: int, lo: datetime, hi: datetime) -> None:
    async for chunk in await pings.csv_chunks(pool, target_id, lo, hi):
        sys.stdout.write(chunk)
    sys.stdout.flush()
