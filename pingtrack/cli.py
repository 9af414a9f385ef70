"""`pingtrack …`: parse, call the functions the services use, format."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import typer
from rich.console import Console

from pingtrack.cli_apply import apply_command, export_command
from pingtrack.cli_dead_letters import dead_letters_app
from pingtrack.cli_fleet import fleet_command, traceroute_command
from pingtrack.cli_history import events_command, seed_command, series_command, stats_command
from pingtrack.cli_storage import storage_command
from pingtrack.cli_targets import pings_command, target_app
from shared.errors import PingtrackError
from shared.ladder import schedule_ladder_for
from shared.logs import setup_logging
from shared.migrate import migrate_database
from shared.settings import Settings, load_settings

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Ping monitoring.")
app.add_typer(target_app, name="target")
app.add_typer(dead_letters_app, name="dead-letters")
app.command("pings")(pings_command)
app.command("apply")(apply_command)
app.command("export")(export_command)
app.command("traceroute")(traceroute_command)
app.command("fleet")(fleet_command)
app.command("storage")(storage_command)
app.command("series")(series_command)
app.command("events")(events_command)
app.command("stats")(stats_command)
app.command("seed-history")(seed_command)
console = Console()
err_console = Console(stderr=True)


@app.callback()
def root() -> None:
    """pingtrack: track IP addresses by ping and keep years of history."""


def settings_or_exit() -> Settings:
    try:
        settings = load_settings()
    except PingtrackError as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    setup_logging(settings.log_level, settings.log_format)
    return settings


async def run_migrations(settings: Settings) -> list[str]:
    applied = await migrate_database(
        settings.database_url, settings.migrations_dir, settings.partition_days_ahead
    )
    if not settings.schedule_ladder:
        console.print("ladder not scheduled (PINGTRACK_SCHEDULE_LADDER=false)")
        return applied
    cron = await schedule_ladder_for(settings.database_url)
    if cron.warning is not None:
        err_console.print(f"[yellow]warning:[/yellow] {cron.warning}")
    else:
        console.print(f"ladder scheduled with pg_cron (job {cron.job_id} in {cron.cron_database})")
    return applied


@app.command("migrate")
def migrate_command() -> None:
    """Create the database if needed and apply pending migrations."""
    settings = settings_or_exit()
    try:
        applied = asyncio.run(run_migrations(settings))
    except (PingtrackError, OSError, asyncpg.PostgresError) as exc:
        err_console.print(f"[red]migration failed:[/red] {exc}")
        raise typer.Exit(1) from exc
    if applied:
        console.print(f"applied {len(applied)} migration(s): {', '.join(applied)}")
    else:
        console.print("database is up to date")


def _serve(settings: Settings, names: list[str]) -> None:
    """Run the named services in this process until Ctrl-C or SIGTERM."""
    from functools import partial

    from pingtrack.runner import run_until_signal

    # Import only the services asked for: a prober needs nothing of the API.
    modules = {
        "api": "api_service.main",
        "prober": "prober_service.main",
        "writer": "writer_service.main",
    }
    services = [(name, partial(_service_runner(modules[name]), settings)) for name in names]
    try:
        asyncio.run(run_until_signal(services))
    except PingtrackError as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc


def _service_runner(module: str) -> Any:
    import importlib

    return importlib.import_module(module).run


@app.command("api")
def api_command() -> None:
    """Run the REST API (port PINGTRACK_API_PORT, default 6666)."""
    _serve(settings_or_exit(), ["api"])


@app.command("prober")
def prober_command() -> None:
    """Run a prober: pings the targets it owns and publishes the results."""
    _serve(settings_or_exit(), ["prober"])


@app.command("writer")
def writer_command() -> None:
    """Run a writer: stores result batches in PostgreSQL."""
    _serve(settings_or_exit(), ["writer"])


@app.command("up")
def up_command() -> None:
    """Migrate, then run api, prober and writer in this process (Ctrl-C stops cleanly)."""
    settings = settings_or_exit()
    try:
        asyncio.run(run_migrations(settings))
    except (PingtrackError, OSError, asyncpg.PostgresError) as exc:
        err_console.print(f"[red]migration failed:[/red] {exc}")
        raise typer.Exit(1) from exc
    console.print(
        f"pingtrack up: api on :{settings.api_port}, prober and writer running; Ctrl-C stops"
    )
    _serve(settings, ["writer", "prober", "api"])


def main() -> None:
    app()
