"""The ladder records its rounds, failures, lag and discarded marks; /health and
/metrics report them (against the real PostgreSQL, each test in a database of
its own, since rounds and retention act on the whole database)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from api_service.ops.ladder_health import (
    CronRun,
    LadderHealth,
    cron_last_run,
    ladder_reasons,
)
from shared.ladder import ROUND_SQL
from shared.settings import Settings
from tests.api_client import api_client
from tests.test_fleet_metrics import samples

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
FAILING_PACK = """
CREATE OR REPLACE FUNCTION ladder_pack(p_max_days integer DEFAULT 1) RETURNS bigint
LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'disk on fire'; END $$"""


@pytest.fixture
def own_settings(settings: Settings, own_database_url: str) -> Settings:
    return settings.model_copy(update={"database_url": own_database_url})


@pytest.fixture
async def conn(own_database_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(own_database_url)
    # As if installed now (the template was migrated when the session began).
    await connection.execute("UPDATE ladder_state SET since = now()")
    yield connection
    await connection.close()


@pytest.fixture
async def client(own_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(own_settings) as c:
        yield c


def hours_ago(n: int) -> str:
    return f"date_bin('1 hour', now(), ladder_origin()) - interval '{n} hours'"


def days_ago(n: int) -> str:
    return f"date_bin('1 day', now(), ladder_origin()) - interval '{n} days'"


async def ping_hour(conn: asyncpg.Connection, target: int, start: str) -> None:
    """60 pings a minute apart from `start` (an SQL timestamptz expression)."""
    day = f"(({start}) AT TIME ZONE 'UTC')::date"
    await conn.execute(f"SELECT ensure_ping_partitions({day}, {day})")
    await conn.execute(
        "INSERT INTO pings (target_id, ts, rtt_us, ttl, hops)"
        f" SELECT $1, {start} + g * interval '1 minute', 900 + g, 61, 3"
        " FROM generate_series(0, 59) g",
        target,
    )


async def state(conn: asyncpg.Connection) -> asyncpg.Record:
    row = await conn.fetchrow("SELECT * FROM ladder_state")
    assert row is not None
    return row


async def health(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/health")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def ladder_reasons_of(body: dict[str, Any]) -> list[str]:
    return [r for r in body["reasons"] if r.startswith("ladder")]


async def test_a_round_records_its_completion_and_health_is_ok(
    conn: asyncpg.Connection, client: httpx.AsyncClient
) -> None:
    await ping_hour(conn, 1, hours_ago(3))
    before = await state(conn)
    assert (before["rounds"], before["finished_at"]) == (0, None)

    await conn.execute(ROUND_SQL)
    after = await state(conn)
    assert (after["rounds"], after["failures"], after["error"]) == (1, 0, None)
    assert before["since"] < after["started_at"] < after["finished_at"]
    assert timedelta(0) < after["duration"] <= after["finished_at"] - after["started_at"]

    body = await health(client)
    assert (body["status"], body["reasons"]) == ("ok", [])
    ladder = body["ladder"]
    assert ladder["last_completed_at"] == after["finished_at"].isoformat(timespec="seconds")
    assert (ladder["rounds_completed"], ladder["rounds_failed"]) == (1, 0)
    assert (ladder["running"], ladder["last_error"], ladder["discarded_marks"]) == (False, None, 0)
    assert ladder["cron_last_run"] is None  # pg_cron lives in another database


async def test_no_round_for_longer_than_the_limit_makes_health_degraded(
    conn: asyncpg.Connection, client: httpx.AsyncClient, own_settings: Settings
) -> None:
    await conn.execute(ROUND_SQL)
    await conn.execute("UPDATE ladder_state SET finished_at = now() - interval '31 minutes'")
    body = await health(client)
    assert body["status"] == "degraded"
    [reason] = ladder_reasons_of(body)
    assert reason.startswith("ladder: no round completed for 31 min (last at ")

    patient = own_settings.model_copy(update={"ladder_stale_after_min": 60})
    async with api_client(patient) as relaxed:
        assert ladder_reasons_of(await health(relaxed)) == []


async def test_a_ladder_that_never_completed_a_round_is_degraded_once_the_limit_passed(
    conn: asyncpg.Connection, client: httpx.AsyncClient
) -> None:
    assert ladder_reasons_of(await health(client)) == []  # just installed
    await conn.execute("UPDATE ladder_state SET since = now() - interval '2 hours'")
    [reason] = ladder_reasons_of(await health(client))
    assert reason.startswith("ladder: no round has completed since ")
    assert "pg_cron" in reason


async def test_a_failing_round_records_its_error_and_health_and_metrics_say_so(
    conn: asyncpg.Connection, client: httpx.AsyncClient
) -> None:
    await ping_hour(conn, 1, hours_ago(3))
    await conn.execute(FAILING_PACK)
    with pytest.raises(
        asyncpg.RaiseError, match="ladder round failed in ladder_pack: disk on fire"
    ):
        await conn.execute(ROUND_SQL)
    failed = await state(conn)
    assert failed["error"] == "ladder_pack: disk on fire (SQLSTATE P0001)"
    assert (failed["failures"], failed["rounds"], failed["finished_at"]) == (1, 0, None)
    assert failed["started_at"] < failed["failed_at"]
    # The steps before the failing one kept their work.
    assert await conn.fetchval("SELECT sum(count) FROM hourly_summaries WHERE target_id = 1") == 60

    body = await health(client)
    assert body["status"] == "degraded"
    [reason] = ladder_reasons_of(body)
    assert reason.startswith("ladder: the last round failed at ")
    assert reason.endswith("(ladder_pack: disk on fire (SQLSTATE P0001))")
    assert body["ladder"]["last_error"] == failed["error"]
    text = (await client.get("/metrics")).text
    assert samples(text, "pingtrack_ladder_last_round_failed") == {"": 1}
    assert samples(text, "pingtrack_ladder_rounds_total") == {
        '{outcome="completed"}': 0,
        '{outcome="failed"}': 1,
    }

    # The function file's body back: the next round completes and clears the failure.
    await conn.execute(pack_function_definition())
    await conn.execute(ROUND_SQL)
    assert ladder_reasons_of(await health(client)) == []
    text = (await client.get("/metrics")).text
    assert samples(text, "pingtrack_ladder_last_round_failed") == {"": 0}


def pack_function_definition() -> str:
    """ladder_pack() as migrations/functions/ladder.sql defines it."""
    source = (Settings().migrations_dir / "functions" / "ladder.sql").read_text()
    start = source.index("CREATE OR REPLACE FUNCTION ladder_pack(")
    return source[start : source.index("$$;", start) + 3]


async def test_metrics_export_the_lag_of_every_tier(
    conn: asyncpg.Connection, client: httpx.AsyncClient
) -> None:
    await ping_hour(conn, 1, hours_ago(3))
    await ping_hour(conn, 1, days_ago(3))
    tiers = {'{tier="hourly"}', '{tier="raw_packed"}'} | {
        f'{{tier="level_{n}"}}' for n in (1, 2, 3)
    }

    behind = samples((await client.get("/metrics")).text, "pingtrack_ladder_lag_seconds")
    assert set(behind) == tiers
    # Nothing rolled up: every tier waits at the oldest dirty hour, 3 days back.
    assert 3 * DAY <= timedelta(seconds=behind['{tier="hourly"}']) < 4 * DAY
    assert behind['{tier="level_1"}'] == behind['{tier="hourly"}']
    assert behind['{tier="level_2"}'] >= behind['{tier="hourly"}']
    assert 3 * DAY <= timedelta(seconds=behind['{tier="raw_packed"}']) < 4 * DAY

    await conn.execute(ROUND_SQL)
    text = (await client.get("/metrics")).text
    behind = {
        k: timedelta(seconds=v) for k, v in samples(text, "pingtrack_ladder_lag_seconds").items()
    }
    # Rolled up to the last settled hour; a day's block up to today; raw packed
    # up to the last day due (pack_after, 1 day): between one and two days back.
    assert timedelta(0) < behind['{tier="hourly"}'] <= HOUR + timedelta(minutes=3)
    assert behind['{tier="level_1"}'] == behind['{tier="hourly"}']
    for level in (2, 3):
        assert behind['{tier="hourly"}'] <= behind[f'{{tier="level_{level}"}}'] < DAY + 2 * HOUR
    assert DAY <= behind['{tier="raw_packed"}'] < 2 * DAY
    assert samples(text, "pingtrack_ladder_rounds_total")['{outcome="completed"}'] == 1
    [age] = samples(text, "pingtrack_ladder_last_round_age_seconds").values()
    [took] = samples(text, "pingtrack_ladder_last_round_duration_seconds").values()
    assert 0 <= age < 60 and 0 < took < 60


async def test_a_discarded_mark_is_counted_and_reported(
    conn: asyncpg.Connection, client: httpx.AsyncClient
) -> None:
    # More expired hours than one rollup batch takes, and one live hour after them.
    await conn.execute("UPDATE ladder_settings SET rollup_batch = 2")
    for target in (1, 2, 3, 4, 5):
        await ping_hour(conn, target, days_ago(20))
    await ping_hour(conn, 6, hours_ago(3))
    await conn.execute(ROUND_SQL)

    after = await state(conn)
    expired_hour = (datetime.now(UTC) - 20 * DAY).replace(hour=0, minute=0, second=0, microsecond=0)
    assert (after["discarded_marks"], after["discarded_hour"]) == (5, expired_hour)
    assert after["finished_at"] - after["discarded_at"] < timedelta(minutes=1)
    # Discarding did not stop the round short of the live hour.
    assert await conn.fetchval("SELECT sum(count) FROM hourly_summaries WHERE target_id = 6") == 60
    assert await conn.fetchval("SELECT count(*) FROM hourly_summaries WHERE target_id < 6") == 0

    body = await health(client)
    [reason] = ladder_reasons_of(body)
    assert reason.startswith("ladder: marks of hours past raw retention discarded unsummarised")
    assert f"newest hour {expired_hour.isoformat()}; 5 in all" in reason
    assert body["ladder"]["discarded_marks"] == 5
    text = (await client.get("/metrics")).text
    assert samples(text, "pingtrack_ladder_discarded_marks_total") == {"": 5}

    await conn.execute(ROUND_SQL)  # nothing new to discard: the counter stays
    assert (await state(conn))["discarded_marks"] == 5


async def test_pg_cron_s_last_run_of_a_database_s_round_is_read(
    cron_conn: asyncpg.Connection | None,
) -> None:
    if cron_conn is None:
        pytest.skip("pg_cron is not loaded")
    database = f"pingtrack_test_cronlog_{uuid.uuid4().hex[:8]}"
    insert = """INSERT INTO cron.job_run_details
                    (jobid, database, username, command, status, return_message,
                     start_time, end_time)
                VALUES (0, $1, current_user, $2, $3, $4, now() - $5::interval, now())
                RETURNING runid"""
    runs = [
        await cron_conn.fetchval(
            insert, database, ROUND_SQL, "succeeded", "CALL", timedelta(minutes=2)
        ),
        await cron_conn.fetchval(
            insert, database, ROUND_SQL, "failed", "ERROR: no such procedure", timedelta(minutes=1)
        ),
    ]
    try:
        assert await cron_last_run(cron_conn, database + "_other") is None
        last = await cron_last_run(cron_conn, database)
    finally:
        await cron_conn.execute("DELETE FROM cron.job_run_details WHERE runid = ANY($1)", runs)
    assert last is not None
    assert (last.status, last.message) == ("failed", "ERROR: no such procedure")


NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def ladder_at(**changes: Any) -> LadderHealth:
    fields: dict[str, Any] = {
        "now": NOW,
        "since": NOW - 30 * DAY,
        "started_at": NOW - timedelta(seconds=50),
        "finished_at": NOW - timedelta(seconds=45),
        "duration": timedelta(seconds=5),
        "failed_at": None,
        "error": None,
        "rounds": 100,
        "failures": 0,
        "discarded_marks": 0,
        "discarded_at": None,
        "discarded_hour": None,
        "lag": {"hourly": timedelta(minutes=30)},
        "cron": None,
    }
    fields.update(changes)
    return LadderHealth(**fields)


LIMIT = timedelta(minutes=10)


def test_a_running_ladder_has_no_reason() -> None:
    assert ladder_reasons(ladder_at(), LIMIT) == []
    # A round running now, after a completed one, is no problem either.
    assert ladder_at(started_at=NOW - timedelta(seconds=5)).running
    assert ladder_reasons(ladder_at(started_at=NOW - timedelta(seconds=5)), LIMIT) == []


def test_pg_cron_s_failure_is_a_reason_when_the_ladder_could_not_record_it() -> None:
    failed = CronRun("failed", "connection failed\n", NOW - timedelta(seconds=20), NOW)
    assert ladder_reasons(ladder_at(cron=failed), LIMIT) == [
        "ladder: pg_cron's last run of the round failed at 2030-01-01T11:59:40+00:00"
        " (connection failed)"
    ]
    older = CronRun("failed", "boom", NOW - timedelta(minutes=5), NOW - timedelta(minutes=5))
    assert ladder_reasons(ladder_at(cron=older), LIMIT) == []  # a round completed since


def test_a_failure_recorded_by_the_ladder_is_said_once() -> None:
    failed_at = NOW - timedelta(seconds=20)
    state = ladder_at(failed_at=failed_at, error="ladder_pack: boom", failures=1)
    cron = CronRun("failed", "ERROR: ladder round failed in ladder_pack: boom", failed_at, NOW)
    expected = ["ladder: the last round failed at 2030-01-01T11:59:40+00:00 (ladder_pack: boom)"]
    assert ladder_reasons(state, LIMIT) == expected
    assert ladder_reasons(replace(state, cron=cron), LIMIT) == expected


def test_a_discard_is_a_reason_for_a_day() -> None:
    recent = ladder_at(discarded_marks=7, discarded_at=NOW - HOUR, discarded_hour=NOW - 20 * DAY)
    [reason] = ladder_reasons(recent, LIMIT)
    assert "discarded unsummarised" in reason and "7 in all" in reason
    assert ladder_reasons(ladder_at(discarded_marks=7, discarded_at=NOW - 2 * DAY), LIMIT) == []
