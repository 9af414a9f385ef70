"""`pingtrack series|events|stats ID` and `pingtrack seed-history`.

Reads call the same functions as the REST API, on their own small pool.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn, TypeVar

import asyncpg
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from api_service.history import events as ev
from api_service.history import series as sr
from api_service.history import stats as st
from api_service.times import iso
from pingtrack.cli_targets import parse_duration, parse_time
from pingtrack.seed import SeedOptions, SeedReport, seed_history
from shared.db import TRANSIENT_DB_ERRORS, create_pool
from shared.errors import InvalidInput, PingtrackError

T = TypeVar("T")
console = Console()
err_console = Console(stderr=True)
BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float | None], low: float | None = None) -> str:
    """One character per value, scaled between the smallest and largest; a gap is a space."""
    present = [v for v in values if v is not None]
    if not present:
        return " " * len(values)
    lo = min(present) if low is None else low
    span = max(present) - lo
    out = []
    for v in values:
        if v is None:
            out.append(" ")
        else:
            level = 0 if span <= 0 else round((v - lo) / span * (len(BARS) - 1))
            out.append(BARS[max(0, min(len(BARS) - 1, level))])
    return "".join(out)


def loss_line(points: Sequence[dict[str, object]]) -> str:
    """' ' no pings, '·' none lost, then ▁..█ by the share lost."""
    out = []
    for p in points:
        count, lost = int(p["count"]), int(p["lost"])  # type: ignore[call-overload]
        if count == 0:
            out.append(" ")
        elif lost == 0:
            out.append("·")
        else:
            out.append(BARS[min(len(BARS) - 1, int(lost / count * len(BARS)))])
    return "".join(out)


def _fail(message: str, code: int) -> NoReturn:
    err_console.print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(code)


def _run(work: Callable[[asyncpg.Pool], Awaitable[T]]) -> T:
    from pingtrack.cli import settings_or_exit  # cli.py imports this module

    settings = settings_or_exit()

    async def main() -> T:
        pool = await create_pool(settings, timeout=10.0, min_size=1, max_size=2)
        try:
            return await work(pool)
        finally:
            await pool.close()

    try:
        return asyncio.run(main())
    except InvalidInput as exc:
        _fail(str(exc), 2)
    except PingtrackError as exc:
        _fail(str(exc), 1)
    except (*TRANSIENT_DB_ERRORS, asyncpg.PostgresError) as exc:
        _fail(f"database: {exc}", 1)


def _range(since: str, start: str | None, end: str | None) -> tuple[datetime, datetime]:
    try:
        hi = parse_time(end, "--to") if end else datetime.now(UTC)
        lo = parse_time(start, "--from") if start else hi - parse_duration(since)
    except InvalidInput as exc:
        _fail(str(exc), 2)
    return lo, hi


SINCE = typer.Option("1d", "--since", help="how far back: 90s, 15m, 1h, 7d, 2w")
FROM = typer.Option(None, "--from", help="ISO 8601 start (instead of --since)")
TO = typer.Option(None, "--to", help="ISO 8601 end (default now)")


def series_command(
    target_id: int = typer.Argument(..., metavar="ID"),
    since: str = SINCE,
    start: str | None = FROM,
    end: str | None = TO,
    points: int = typer.Option(0, "--points", help="buckets (default: terminal width)"),
    table: bool = typer.Option(False, "--table", help="every bucket as a table row"),
) -> None:
    """A target's RTT and loss over a range, as a sparkline (or a table)."""
    lo, hi = _range(since, start, end)
    width = points or max(10, min(sr.MAX_POINTS, shutil.get_terminal_size().columns - 8))
    result = _run(lambda pool: sr.series(pool, target_id, lo, hi, width))
    body = result.content()
    pts: list[dict[str, object]] = body["points"]  # type: ignore[assignment]
    console.print(
        f"target {target_id}: {body['tier']} · {len(pts)} buckets of "
        f"{timedelta(seconds=float(body['bucket_s']))} · {body['from']} → {body['to']}",  # type: ignore[arg-type]
        highlight=False,
    )
    if table:
        rows = Table("start (UTC)", "count", "lost", "min ms", "avg ms", "max ms", "hops")
        for p in pts:
            rows.add_row(*("" if p[k] is None else str(p[k]) for k in
                           ("start", "count", "lost", "min", "avg", "max", "hops")))  # fmt: skip
        console.print(rows)
        return
    avgs = [p["avg"] for p in pts]
    maxes = [p["max"] for p in pts]
    floor = min((v for v in avgs if v is not None), default=None)  # type: ignore[type-var]
    console.print(f"max  {sparkline(maxes, floor)}", highlight=False)  # type: ignore[arg-type]
    console.print(f"avg  {sparkline(avgs, floor)}", highlight=False)  # type: ignore[arg-type]
    console.print(f"loss {loss_line(pts)}", highlight=False)
    mins = [float(p["min"]) for p in pts if p["min"] is not None]  # type: ignore[arg-type]
    tops = [float(m) for m in maxes if m is not None]  # type: ignore[arg-type]
    total = sum(int(p["count"]) for p in pts)  # type: ignore[call-overload]
    lost = sum(int(p["lost"]) for p in pts)  # type: ignore[call-overload]
    if mins:
        console.print(
            f"rtt {min(mins):.3f} … {max(tops):.3f} ms · {total} pings, {lost} lost",
            highlight=False,
        )
    else:
        console.print(f"no answered pings ({total} pings, {lost} lost)")


def events_command(
    target_id: int = typer.Argument(..., metavar="ID"),
    since: str = SINCE,
    start: str | None = FROM,
    end: str | None = TO,
) -> None:
    """Loss runs, latency shifts and hop changes over a range."""
    lo, hi = _range(since, start, end)
    result = _run(lambda pool: ev.events(pool, target_id, lo, hi)).content()
    rows = Table("kind", "start (UTC)", "end (UTC)", "magnitude", title=f"from {result['tier']}")
    style = {"loss": "red", "latency_shift": "yellow", "hop_change": "cyan"}
    for e in result["events"]:  # type: ignore[attr-defined]
        kind = e["kind"]
        rows.add_row(f"[{style.get(kind, 'magenta')}]{kind}[/]", e["start"], e["end"],
                     _magnitude(e))  # fmt: skip
    console.print(rows)
    console.print(f"{len(result['events'])} event(s) from {result['from']} to {result['to']}")  # type: ignore[arg-type]


def _magnitude(event: dict[str, Any]) -> str:
    if event["kind"] == "address_change":
        return f"{event['old'] or 'unresolved'} → {event['new'] or 'unresolved'}"
    if event["kind"] == "loss":
        return f"{event['magnitude']} {event['unit']}"
    return f"{event['magnitude']:+g} {event['unit']}"


def stats_command(
    target_id: int = typer.Argument(..., metavar="ID"),
    since: str = SINCE,
    start: str | None = FROM,
    end: str | None = TO,
) -> None:
    """Availability, loss, RTT figures, jitter and hop changes over a range."""
    lo, hi = _range(since, start, end)
    result = _run(lambda pool: st.stats(pool, target_id, lo, hi)).content()
    rows = Table(show_header=False, box=None, title=f"target {target_id}", title_justify="left")
    for key, value in result.items():
        rows.add_row(key, "" if value is None else str(value))
    console.print(rows)


def seed_command(
    targets: int = typer.Option(300, "--targets", min=1, help="how many targets to create"),
    years: float = typer.Option(5.0, "--years", min=0.001, help="history per target"),
    interval: float = typer.Option(1.0, "--interval", help="seconds between pings"),
    raw_days: float | None = typer.Option(
        None, "--raw-days", help="raw window (default: the ladder's raw_retention)"
    ),
    seed: int = typer.Option(0, "--seed", help="random seed"),
) -> None:
    """Create targets with synthetic history written straight into the ladder's tiers."""
    raw = None if raw_days is None else timedelta(days=raw_days)
    options = SeedOptions(targets, years, interval, raw, seed=seed)
    columns = (TextColumn("seeding"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("targets", total=targets)

        async def work(pool: asyncpg.Pool) -> tuple[SeedReport, int]:
            report = await seed_history(pool, options, lambda n: progress.advance(task, n))
            size = await pool.fetchval("SELECT pg_database_size(current_database())")
            return report, size

        report, size = _run(work)
    rows = Table("tier", "rows")
    for table, n in report.rows.items():
        rows.add_row(table, f"{n:,}")
    console.print(rows)
    console.print(
        f"{targets} target(s) × {years:g} years in {report.seconds:.1f} s; "
        f"database now {size / 2**30:.2f} GiB; ids {report.target_ids[0]}…{report.target_ids[-1]}"
        f" (stopped, history kept); ends {iso(datetime.now(UTC))}",
        highlight=False,
    )
