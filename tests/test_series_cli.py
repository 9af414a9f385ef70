"""`pingtrack series|events|stats|seed-history` and the sparkline."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from click.testing import Result
from typer.testing import CliRunner

from pingtrack.cli import app
from pingtrack.cli_history import loss_line, sparkline
from shared.settings import Settings
from tests.history_data import Laddered, laddered


@pytest.fixture(scope="module")
async def data(database_url: str) -> Laddered:
    return await laddered(database_url, days_ago=6)


@pytest.fixture
def env(settings: Settings) -> dict[str, str]:
    return {"PINGTRACK_DATABASE_URL": settings.database_url, "COLUMNS": "120"}


async def pingtrack(env: dict[str, str], *args: str) -> Result:
    return await asyncio.to_thread(
        CliRunner().invoke, app, list(args), env=env, catch_exceptions=False
    )


def test_sparkline_scales_values_and_leaves_gaps() -> None:
    assert sparkline([1.0, None, 5.0, 3.0]) == "▁ █▅"
    assert sparkline([2.0, 2.0]) == "▁▁"
    assert sparkline([None, None]) == "  "


def test_loss_line_marks_share_lost() -> None:
    points = [{"count": 0, "lost": 0}, {"count": 10, "lost": 0}, {"count": 10, "lost": 10},
              {"count": 10, "lost": 1}]  # fmt: skip
    assert loss_line(points) == " ·█▁"


def _window(data: Laddered) -> list[str]:
    z = lambda t: t.isoformat()  # noqa: E731
    return ["--from", z(data.start), "--to", z(data.end)]


async def test_series_prints_tier_sparklines_and_totals(
    env: dict[str, str], data: Laddered
) -> None:
    result = await pingtrack(env, "series", str(data.target_id), *_window(data), "--points", "36")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "segments_l1 · 36 buckets of 0:10:00" in lines[0]
    assert lines[1].startswith("max  ") and len(lines[1]) == 5 + 36
    assert lines[3].startswith("loss ") and lines[3][5:].count("·") == 35
    assert "21600 pings, 40 lost" in lines[4]


async def test_series_table_lists_every_bucket(env: dict[str, str], data: Laddered) -> None:
    window = _window(data)
    result = await pingtrack(
        env, "series", str(data.target_id), *window, "--points", "6", "--table"
    )
    assert result.exit_code == 0, result.output
    assert result.output.count("3600") == 6


async def test_events_and_stats_print_what_the_api_serves(
    env: dict[str, str], data: Laddered
) -> None:
    result = await pingtrack(env, "events", str(data.target_id), *_window(data))
    assert result.exit_code == 0, result.output
    assert "loss" in result.output and "latency_shift" in result.output
    assert "hop_change" in result.output and "3 event(s)" in result.output
    result = await pingtrack(env, "stats", str(data.target_id), *_window(data))
    assert result.exit_code == 0, result.output
    assert "21600" in result.output and "hop_changes" in result.output


async def test_unknown_target_and_bad_since_fail_clearly(env: dict[str, str]) -> None:
    result = await pingtrack(env, "series", "987654", "--since", "1h")
    assert result.exit_code == 1 and "does not exist" in result.output
    result = await pingtrack(env, "stats", "1", "--since", "soon")
    assert result.exit_code == 2 and "not like 90s" in result.output


async def test_seed_history_command_creates_targets_with_history(
    env: dict[str, str], pool: asyncpg.Pool
) -> None:
    result = await pingtrack(env, "seed-history", "--targets", "2", "--years", "0.05",
                             "--raw-days", "1", "--seed", "3")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "2 target(s)" in result.output and "segments_l1" in result.output
    names = await pool.fetch("SELECT state FROM targets WHERE name LIKE 'seed-%' ORDER BY id")
    assert len(names) >= 2 and {r["state"] for r in names} == {"stopped"}


def test_event_magnitudes_read_plainly_for_every_kind() -> None:
    from pingtrack.cli_history import _magnitude

    assert _magnitude({"kind": "loss", "magnitude": 12, "unit": "pings"}) == "12 pings"
    assert _magnitude({"kind": "latency_shift", "magnitude": 4.5, "unit": "ms"}) == "+4.5 ms"
    assert _magnitude({"kind": "hop_change", "magnitude": -1, "unit": "hops"}) == "-1 hops"
    change = {"kind": "address_change", "magnitude": 0, "unit": None, "old": "127.0.0.5"}
    assert _magnitude({**change, "new": "127.0.0.6"}) == "127.0.0.5 → 127.0.0.6"
    assert _magnitude({**change, "new": None}) == "127.0.0.5 → unresolved"
