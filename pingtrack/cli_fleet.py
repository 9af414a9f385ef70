"""Operator commands about paths and probers: `pingtrack traceroute ID`, `pingtrack fleet`.

Like the target commands they call the API's own functions with their own
pool, not over HTTP; a traceroute runs from this machine.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import asyncpg
import typer
from rich.console import Console
from rich.table import Table

from api_service.ops.fleet import ProberRow, fleet_rows
from api_service.results.traceroute import Trace, latest_trace, trace_target
from shared.db import TRANSIENT_DB_ERRORS, create_pool
from shared.errors import NotFound, PingtrackError
from shared.settings import Settings

T = TypeVar("T")
console = Console()
err_console = Console(stderr=True)


def _with_pool(work: Callable[[asyncpg.Pool, Settings], Awaitable[T]]) -> T:
    from pingtrack.cli import settings_or_exit  # cli.py imports this module

    settings = settings_or_exit()

    async def main() -> T:
        pool = await create_pool(settings, timeout=10.0, min_size=1, max_size=2)
        try:
            return await work(pool, settings)
        finally:
            await pool.close()

    try:
        return asyncio.run(main())
    except NotFound as exc:
        err_console.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(1) from exc
    except (PingtrackError, *TRANSIENT_DB_ERRORS, asyncpg.PostgresError) as exc:
        err_console.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(1) from exc


def trace_table(trace: Trace) -> Table:
    outcome = f"{trace.hop_count} hops" if trace.reached else "not reached"
    table = Table(title=f"traceroute to {trace.address} (target {trace.target_id}): {outcome}")
    table.add_column("ttl", justify="right")
    table.add_column("address")
    table.add_column("rtt", justify="right")
    for hop in trace.hops:
        table.add_row(str(hop.ttl), hop.address, f"{hop.rtt_ms:.3f} ms")
    return table


def traceroute_command(
    target_id: Annotated[int, typer.Argument(help="target id")],
    last: Annotated[bool, typer.Option("--last", help="show the latest stored trace")] = False,
) -> None:
    """Trace the route to a target now and store it (needs raw ICMP), or show the last one."""
    if last:
        trace = _with_pool(lambda pool, _: latest_trace(pool, target_id))
    else:
        trace = _with_pool(lambda pool, _: trace_target(pool, target_id))
    console.print(trace_table(trace))


def fleet_table(rows: list[ProberRow]) -> Table:
    table = Table(title=f"probers: {sum(r.live for r in rows)} live")
    for column in ("prober", "state", "heartbeat", "shards", "targets", "pings/s", "late", "lost"):
        table.add_column(column)
    for row in rows:
        stats = row.stats
        table.add_row(
            row.id,
            "[green]live[/]" if row.live else "[red]gone[/]",
            f"{row.age_s:.1f}s ago",
            str(row.shards),
            str(stats.get("targets", "")),
            str(stats.get("send_rate", "")),
            str(stats.get("late_sends", "")),
            str(stats.get("lost", "")),
        )
    return table


def fleet_command() -> None:
    """The probers of this deployment (PINGTRACK_AMQP_PREFIX) and their last heartbeat."""
    rows = _with_pool(lambda pool, settings: fleet_rows(pool, settings.amqp_prefix))
    console.print(fleet_table(rows))
