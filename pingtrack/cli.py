"""`pingtrack …`: parse, call the functions the services use, format."""

from __future__ import annotations

import asyncio

import asyncpg
import typer
from rich.console import Console

from shared.errors import PingtrackError
from shared.logs import setup_logging
from shared.migrate import create_database_if_missing, migrate
from shared.settings import Settings, load_settings

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Ping monitoring.")
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
    await create_database_if_missing(settings.database_url)
    conn = await asyncpg.connect(settings.database_url)
    try:
        return await migrate(conn, settings.migrations_dir, settings.partition_days_ahead)
    finally:
        await conn.close()


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


def main() -> None:
    app()
