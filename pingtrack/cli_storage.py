"""`pingtrack storage`: bytes per tier now and the projection, from the database."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import typer
from rich.console import Console
from rich.table import Table

from api_service.ops.storage import storage_report
from shared.errors import PingtrackError

console = Console()
err_console = Console(stderr=True)


def human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def _optional(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def render(report: dict[str, Any]) -> None:
    now = Table(title="stored now")
    for column in ("tier", "rows", "pings", "bytes", "B/row", "B/ping"):
        now.add_column(column, justify="left" if column == "tier" else "right")
    for t in report["now"]["tiers"]:
        now.add_row(
            t["tier"],
            f"{t['rows']:,}",
            f"{t['pings']:,}",
            human_bytes(t["bytes"]),
            _optional(t["bytes_per_row"]),
            _optional(t["bytes_per_ping"]),
        )
    console.print(now)
    p = report["projection"]
    title = (
        f"projection: {p['targets']} targets every {p['interval_s']:g} s for {p['years']:g} years"
    )
    proj = Table(title=title)
    for column in ("tier", "kept (days)", "rows", "bytes"):
        proj.add_column(column, justify="left" if column == "tier" else "right")
    for t in p["tiers"]:
        proj.add_row(
            t["tier"], f"{t['retention_days']:.0f}", f"{t['rows']:,.0f}", human_bytes(t["bytes"])
        )
    console.print(proj)
    console.print(f"total with the ladder:      {human_bytes(p['total_bytes'])}")
    console.print(f"every ping kept, packed:    {human_bytes(p['keep_every_ping_bytes'])}")
    console.print(
        f"every ping kept as a row:   {human_bytes(p['raw_only_bytes'])}"
        f"  ({p['contraction']:g}x the ladder)"
    )
    sources = {
        k: v["source"]
        for k, v in report["figures"].items()
        if isinstance(v, dict) and "source" in v
    }
    defaults = sorted(k for k, s in sources.items() if s == "default")
    if defaults:
        console.print(f"[dim]not enough data yet, defaults used for: {', '.join(defaults)}[/dim]")


async def _report(
    database_url: str, targets: int, interval_s: float, years: float
) -> dict[str, Any]:
    conn = await asyncpg.connect(database_url)
    try:
        return await storage_report(conn, targets, interval_s, years)
    finally:
        await conn.close()


def storage_command(
    targets: int = typer.Option(300, "--targets", help="number of targets to project"),
    interval: float = typer.Option(1.0, "--interval", help="seconds between pings"),
    years: float = typer.Option(5.0, "--years", help="how long history is kept"),
    as_json: bool = typer.Option(False, "--json", help="print the same JSON as GET /storage"),
) -> None:
    """Bytes per tier now (measured) and the projection for a fleet."""
    import json

    from pingtrack.cli import settings_or_exit  # cli.py imports this module

    settings = settings_or_exit()
    try:
        report = asyncio.run(_report(settings.database_url, targets, interval, years))
    except (PingtrackError, OSError, asyncpg.PostgresError) as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2 if isinstance(exc, PingtrackError) else 1) from exc
    if as_json:
        console.print_json(json.dumps(report))
    else:
        render(report)
