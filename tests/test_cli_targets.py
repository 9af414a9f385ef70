"""`pingtrack target …` and `pingtrack pings` against the real database and broker."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from click.testing import Result
from typer.testing import CliRunner

from pingtrack.cli import app
from pingtrack.cli_targets import ago, parse_duration
from shared.constants import Topology
from shared.errors import InvalidInput
from shared.settings import Settings
from tests.api_client import CommandTap, unique_address


@pytest.fixture
def cli_env(settings: Settings) -> dict[str, str]:
    return {
        "PINGTRACK_DATABASE_URL": settings.database_url,
        "PINGTRACK_AMQP_URL": settings.amqp_url,
        "PINGTRACK_AMQP_PREFIX": settings.amqp_prefix,
        "PINGTRACK_LOG_FORMAT": "text",
        "COLUMNS": "200",
    }


@pytest.fixture
async def tap(settings: Settings) -> AsyncIterator[CommandTap]:
    async with CommandTap.open(settings) as tap:
        yield tap


async def pingtrack(env: dict[str, str], *args: str, answer: str | None = None) -> Result:
    # In a thread: the CLI runs its own event loop with asyncio.run.
    return await asyncio.to_thread(
        CliRunner().invoke, app, list(args), env=env, input=answer, catch_exceptions=False
    )


async def add(env: dict[str, str], *options: str) -> tuple[int, str]:
    address = unique_address()
    result = await pingtrack(env, "target", "add", address, *options)
    assert result.exit_code == 0, result.output
    match = re.search(r"added target (\d+)", result.output)
    assert match is not None, result.output
    return int(match.group(1)), address


async def _state(pool: asyncpg.Pool, target_id: int) -> asyncpg.Record | None:
    return await pool.fetchrow(
        "SELECT state, rev, name, interval_ms, timeout_ms FROM targets WHERE id = $1", target_id
    )


async def test_add_stores_the_target_shows_it_and_publishes(
    cli_env: dict[str, str], pool: asyncpg.Pool, tap: CommandTap, settings: Settings
) -> None:
    target_id, address = await add(
        cli_env, "--name", "edge", "--interval", "2.5", "--timeout", "0.5"
    )
    row = await _state(pool, target_id)
    assert row is not None
    assert tuple(row) == ("active", 1, "edge", 2500, 500)
    published = await tap.take()
    assert [(p.routing_key, p.spec.address, p.spec.state) for p in published] == [
        (Topology(settings.amqp_prefix).target_key(target_id), address, "active")
    ]


async def test_list_and_show_print_state_and_settings(
    cli_env: dict[str, str], pool: asyncpg.Pool
) -> None:
    first, first_address = await add(cli_env, "--name", "alpha")
    second, second_address = await add(cli_env, "--interval", "0.5")
    await pool.execute(
        "INSERT INTO pings (target_id, ts, rtt_us, ttl, hops) VALUES ($1, now(), 1234, 64, 0)",
        first,
    )
    assert (await pingtrack(cli_env, "target", "pause", str(second))).exit_code == 0

    listed = await pingtrack(cli_env, "target", "list")
    assert listed.exit_code == 0
    line_of = {
        target_id: next(line for line in listed.output.splitlines() if f" {address} " in line)
        for target_id, address in ((first, first_address), (second, second_address))
    }
    assert "alpha" in line_of[first] and "active" in line_of[first]
    assert "1.234 ms" in line_of[first]
    assert "paused" in line_of[second] and "0.5s" in line_of[second]

    paused_only = await pingtrack(cli_env, "target", "list", "--state", "paused")
    assert second_address in paused_only.output and first_address not in paused_only.output

    shown = await pingtrack(cli_env, "target", "show", str(first))
    assert shown.exit_code == 0
    assert re.search(rf"probes\s+{re.escape(first_address)}", shown.output)
    assert re.search(r"interval\s+1s", shown.output)
    assert re.search(r"last ping\s+\d+s ago 1\.234 ms", shown.output)


async def test_pause_resume_stop_and_delete_change_the_row(
    cli_env: dict[str, str], pool: asyncpg.Pool
) -> None:
    target_id, _ = await add(cli_env)
    for command, state, rev in (
        ("pause", "paused", 2),
        ("resume", "active", 3),
        ("stop", "stopped", 4),
    ):
        result = await pingtrack(cli_env, "target", command, str(target_id))
        assert result.exit_code == 0, result.output
        assert f"target {target_id}" in result.output and f"is {state}" in result.output
        row = await _state(pool, target_id)
        assert row is not None and (row["state"], row["rev"]) == (state, rev)

    refused = await pingtrack(cli_env, "target", "resume", str(target_id))
    assert refused.exit_code == 1
    assert f"error: target {target_id} is stopped; it cannot be resumed" in refused.output

    kept = await pingtrack(cli_env, "target", "delete", str(target_id), answer="n\n")
    assert kept.exit_code == 1 and "nothing deleted" in kept.output
    row = await _state(pool, target_id)
    assert row is not None and row["state"] == "stopped"

    deleted = await pingtrack(cli_env, "target", "delete", str(target_id), "--yes")
    assert deleted.exit_code == 0 and "is deleted" in deleted.output
    row = await _state(pool, target_id)
    assert row is not None and row["state"] == "deleted"


async def test_delete_purge_removes_target_and_pings(
    cli_env: dict[str, str], pool: asyncpg.Pool
) -> None:
    target_id, _ = await add(cli_env)
    await pool.execute(
        """INSERT INTO pings (target_id, ts, rtt_us)
           SELECT $1, now() - s * interval '1 second', 500 FROM generate_series(1, 12) s""",
        target_id,
    )
    result = await pingtrack(cli_env, "target", "delete", str(target_id), "--purge", answer="y\n")
    assert result.exit_code == 0, result.output
    assert f"target {target_id} purged with 12 raw ping(s)" in result.output
    assert await _state(pool, target_id) is None
    assert await pool.fetchval("SELECT count(*) FROM pings WHERE target_id = $1", target_id) == 0


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["target", "add", "printer_1.local"], "is not a valid DNS name"),
        (["target", "add", "999.1.1.1"], "is neither an IP address nor a DNS name"),
        (["target", "add", "192.0.2.200", "--interval", "0.05"], "interval_s must be between"),
        (["target", "list", "--state", "sleeping"], "unknown state 'sleeping'"),
        (["pings", "1", "--since", "a while"], "is not like 90s, 15m, 1h, 2d or 1w"),
        (["pings", "1", "--from", "monday"], "--from 'monday' is not an ISO 8601 time"),
    ],
)
async def test_bad_input_exits_2_with_a_red_line_and_no_traceback(
    cli_env: dict[str, str], args: list[str], says: str
) -> None:
    result = await pingtrack(cli_env, *args)
    assert result.exit_code == 2
    assert "error:" in result.output and says in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("command", ["show", "pause", "resume", "stop"])
async def test_unknown_ids_exit_1(cli_env: dict[str, str], command: str) -> None:
    result = await pingtrack(cli_env, "target", command, "987654321")
    assert result.exit_code == 1
    assert "error: target 987654321 does not exist" in result.output


async def test_a_broker_outage_saves_the_change_and_warns(
    cli_env: dict[str, str], pool: asyncpg.Pool
) -> None:
    down = {**cli_env, "PINGTRACK_AMQP_URL": "amqp://guest:guest@127.0.0.1:1/"}
    target_id, _ = await add(down)
    result = await pingtrack(down, "target", "pause", str(target_id))
    assert result.exit_code == 0
    assert "saved, but the broker did not take the command" in result.output
    row = await _state(pool, target_id)
    assert row is not None and row["state"] == "paused"


async def test_pings_shows_the_newest_and_csv_the_whole_range(
    cli_env: dict[str, str], pool: asyncpg.Pool
) -> None:
    target_id, _ = await add(cli_env)
    now = datetime.now(UTC).replace(microsecond=0)
    await pool.executemany(
        "INSERT INTO pings (target_id, ts, rtt_us, ttl, hops) VALUES ($1, $2, $3, 60, 4)",
        [
            (target_id, now - timedelta(seconds=100 - i), None if i == 99 else 2000 + i)
            for i in range(100)
        ],
    )
    table = await pingtrack(cli_env, "pings", str(target_id), "--since", "10m", "--limit", "3")
    assert table.exit_code == 0, table.output
    assert "2.097" in table.output and "2.098" in table.output and "lost" in table.output
    assert "2.096" not in table.output
    assert "3 ping(s)" in table.output

    csv = await pingtrack(cli_env, "pings", str(target_id), "--since", "1h", "--csv")
    assert csv.exit_code == 0
    lines = csv.stdout.splitlines()
    assert lines[0] == "ts,rtt_ms,lost,hops,ttl"
    assert len(lines) == 101
    assert lines[1].endswith(",2,false,4,60")
    assert lines[-1].endswith(",,true,4,60")

    missing = await pingtrack(cli_env, "pings", "987654321")
    assert missing.exit_code == 1 and "target 987654321 does not exist" in missing.output


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("15m", 900), ("1h", 3600), ("2d", 172800), ("1.5h", 5400)]
)
def test_durations_parse(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


def test_a_duration_without_unit_is_refused() -> None:
    with pytest.raises(InvalidInput):
        parse_duration("90")


def test_ago_uses_the_largest_whole_unit() -> None:
    now = datetime(2024, 1, 2, tzinfo=UTC)
    assert ago(now - timedelta(seconds=5), now) == "5s ago"
    assert ago(now - timedelta(minutes=3, seconds=59), now) == "3m ago"
    assert ago(now - timedelta(hours=26), now) == "1d ago"
    assert ago(now + timedelta(seconds=3), now) == "0s ago"
