"""The dashboard in headless Chromium against the real API on its browser-safe port.

300 targets listed, one with two hours of 1 Hz pings (a loss run and a hop
change), one with five years of hourly summaries; the page is loaded, a
target opened and zoomed, one target paused with the admin token, and the
time to first draw of a 5-year range measured. Screenshots and timings go to
artifacts/.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from api_service.main import run
from shared.settings import Settings
from tests.api_client import unique_address
from tests.conftest import ADMIN_TOKEN
from tests.stack import free_port

ROOT = Path(__file__).resolve().parents[1]
BROWSER_DIR = ROOT / "tests" / "browser"
ARTIFACTS = ROOT / "artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
LISTED = 300
FIVE_YEARS = timedelta(days=1826)
ROUTE_CHANGE_AT = timedelta(minutes=80)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed"),
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(), reason="chromium is not installed (apt-get install chromium)"
    ),
    pytest.mark.skipif(
        not (BROWSER_DIR / "node_modules" / "playwright-core").exists(),
        reason="playwright-core is not installed (npm ci --prefix tests/browser)",
    ),
]


async def _add_targets(conn: asyncpg.Connection, n: int, created: datetime) -> list[int]:
    ids: list[int] = []
    for _ in range(n):
        ids.append(
            await conn.fetchval(
                "INSERT INTO targets (address, interval_ms, timeout_ms, state, created_at)"
                " VALUES ($1::inet, 1000, 1000, 'active', $2) RETURNING id",
                unique_address(),
                created,
            )
        )
    return ids


async def _two_hours_of_pings(conn: asyncpg.Connection, target_id: int, now: datetime) -> None:
    """~20 ms with noise and spikes, a 2-minute loss run, 12 -> 13 hops at 80 min."""
    rng = random.Random(target_id)
    start = (now - timedelta(hours=2)).replace(microsecond=0)
    rows = []
    for i in range(2 * 3600):
        offset = timedelta(seconds=i)
        ts = start + offset
        if timedelta(minutes=40) <= offset < timedelta(minutes=42):
            rows.append((target_id, ts, None, None, None))
            continue
        rtt = 20_000 + rng.randint(-1500, 1500) + (30_000 if i % 600 == 0 else 0)
        hops = 13 if offset >= ROUTE_CHANGE_AT else 12
        rows.append((target_id, ts, rtt, 64 - hops, hops))
    await conn.execute("SELECT ensure_ping_partitions($1, $2)", start.date(), now.date())
    await conn.copy_records_to_table(
        "pings", records=rows, columns=["target_id", "ts", "rtt_us", "ttl", "hops"]
    )


async def _five_years_of_hours(conn: asyncpg.Connection, target_id: int, now: datetime) -> None:
    """Hourly summaries as the ladder leaves them: a yearly swing and a route change."""
    first = (now - FIVE_YEARS).replace(minute=0, second=0, microsecond=0)
    rows = []
    hour = first
    i = 0
    while hour < now - timedelta(hours=1):
        mean = 20_000 + 8_000 * ((i // (24 * 90)) % 4) + (i % 24) * 150
        lost = 3600 if i % 5000 == 17 else (i % 37 == 0)
        count = 3600
        n = count - lost
        hops = 12 if i < 20_000 else 14
        rows.append(
            (target_id, hour, count, lost, mean - 4_000, mean + 9_000, mean * n,
             mean * mean * n, mean if n else None, hops, hops, 0, int(lost > 0))
        )  # fmt: skip
        hour += timedelta(hours=1)
        i += 1
    await conn.copy_records_to_table(
        "hourly_summaries",
        records=rows,
        columns=[
            "target_id", "hour", "count", "lost", "min_us", "max_us", "sum_us",
            "sumsq_us", "mean_us", "hops_min", "hops_max", "hop_changes", "loss_runs",
        ],
    )  # fmt: skip


async def _seed(database_url: str) -> dict[str, Any]:
    now = datetime.now(UTC)
    conn = await asyncpg.connect(database_url)
    try:
        async with conn.transaction():
            ids = await _add_targets(conn, LISTED - 1, now - timedelta(days=3))
            [five] = await _add_targets(conn, 1, now - FIVE_YEARS)
            await _two_hours_of_pings(conn, ids[0], now)
            await _five_years_of_hours(conn, five, now)
        addresses = dict(
            await conn.fetch("SELECT id, host(address) FROM targets WHERE id = ANY($1)", ids[:2])
        )
    finally:
        await conn.close()
    return {
        "target": ids[0],
        "address": addresses[ids[0]],
        "pause": ids[1],
        "pause_address": addresses[ids[1]],
        "five_years": five,
    }


async def _up(port: int) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        for _ in range(200):
            try:
                if (await client.get("/health")).status_code < 500:
                    return
            except httpx.ConnectError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError(f"the API did not come up on port {port}")


async def _drive(config: dict[str, Any]) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        "node",
        "dashboard.mjs",
        json.dumps(config),
        cwd=BROWSER_DIR,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(proc.communicate(), 90)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode == 0, stderr.decode()[-4000:]
    result: dict[str, Any] = json.loads(stdout)
    return result


@pytest.mark.timeout(150)
async def test_dashboard_lists_targets_opens_one_zooms_and_pauses(
    settings: Settings, database_url: str
) -> None:
    seeded = await _seed(database_url)
    web_port = free_port()
    update = {"api_host": "127.0.0.1", "api_port": free_port(), "web_port": web_port}
    stop = asyncio.Event()
    served = asyncio.create_task(run(settings.model_copy(update=update), stop))
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        await _up(web_port)
        seen = await _drive(
            {
                **seeded,
                "base": f"http://127.0.0.1:{web_port}",
                "artifacts": str(ARTIFACTS),
                "token": ADMIN_TOKEN,
                "chromium": CHROMIUM,
            }
        )
    finally:
        stop.set()
        await asyncio.wait_for(served, 15)
    (ARTIFACTS / "dashboard-browser.json").write_text(json.dumps(seen, indent=2))

    assert seen["console_errors"] == []
    assert seen["foreign_requests"] == []
    # Every target listed from one request; sparklines only for rows on screen.
    assert seen["rows"] >= LISTED
    assert 0 < seen["sparks_drawn_first_screen"] <= seen["series_requests_overview"] < 100
    sparks = seen["series_requests"][: seen["series_requests_overview"]]
    assert all(r["points"] == 61 and r["span_ms"] == 3_600_000 for r in sparks)

    opened = seen["opened"]
    assert opened["tier"] == "raw"
    assert int(opened["points"]) > 0
    zoom = seen["zoom"]
    assert zoom["span_after_ms"] < zoom["span_before_ms"] * 0.5
    assert zoom["canvas_changed"]
    assert zoom["draws_after"] > zoom["draws_before"]
    narrower = [
        r for r in zoom["series_requests_after_zoom"] if r["span_ms"] < zoom["span_before_ms"]
    ]
    assert narrower and narrower[0]["path"] == f"/targets/{seeded['target']}/series"
    assert "from=" in zoom["hash"]
    # Shift-drag over a fifth of the plot moves the range back by about a fifth.
    moved = seen["pan"]
    assert moved["span_after_ms"] == moved["span_before_ms"]
    assert 0.15 < moved["shift_ms"] / moved["span_before_ms"] < 0.25
    # The zoomed range (panned back again) holds the loss run and the route change.
    assert "packet loss" in seen["events_text"] and "hop change" in seen["events_text"]
    pings = re.match(r"pings([\d,]+)", seen["stats_text"])
    assert pings and 6000 < int(pings.group(1).replace(",", "")) <= 7200

    admin = seen["admin"]
    assert admin == {
        "actions_shown_without_token": False,
        "state_after_pause": "paused",
        "resume_enabled": True,
        "token_stored": True,
    }

    five = seen["five_years"]
    assert five["tier"] == "hourly"
    assert five["points"] > 500
    assert five["first_draw_ms"] < 5000
    assert five["overview_rendered_ms"] < 5000
