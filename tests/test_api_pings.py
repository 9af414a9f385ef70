"""GET /targets/{id}/pings: keyset pages, time ranges and the CSV stream."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest

from shared.settings import Settings
from tests.api_client import ADMIN, api_client, unique_address

N_PINGS = 2500


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(settings) as client:
        yield client


def _z(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


@pytest.fixture
async def history(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> tuple[int, list[tuple[datetime, int | None, int | None, int | None]]]:
    """A target with N_PINGS pings 1 s apart ending a minute ago; every 7th lost."""
    created = await client.post("/targets", json={"address": unique_address()}, headers=ADMIN)
    target_id: int = created.json()["id"]
    start = datetime.now(UTC).replace(microsecond=250) - timedelta(seconds=N_PINGS + 60)
    rows = [
        (
            start + timedelta(seconds=i),
            None if i % 7 == 0 else 1000 + i,
            None if i % 7 == 0 else 61,
            None if i % 7 == 0 else 3,
        )
        for i in range(N_PINGS)
    ]
    await pool.copy_records_to_table(
        "pings",
        records=[(target_id, ts, rtt, ttl, hops) for ts, rtt, ttl, hops in rows],
        columns=["target_id", "ts", "rtt_us", "ttl", "hops"],
    )
    return target_id, rows


def _expected(rows: list[tuple[datetime, int | None, int | None, int | None]]) -> list[dict]:
    return [
        {
            "ts": _z(ts),
            "rtt_ms": None if rtt is None else rtt / 1000,
            "lost": rtt is None,
            "hops": hops,
            "ttl": ttl,
        }
        for ts, rtt, ttl, hops in rows
    ]


async def test_pages_are_contiguous_without_gaps_or_duplicates(
    client: httpx.AsyncClient, history: tuple[int, list]
) -> None:
    target_id, rows = history
    items: list[dict] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 1000} | ({"cursor": cursor} if cursor else {})
        response = await client.get(f"/targets/{target_id}/pings", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["items"]) == (1000 if page["next_cursor"] else N_PINGS % 1000)
        items.extend(page["items"])
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert items == _expected(rows)


async def test_default_page_is_1000_and_an_exact_fit_ends_with_a_null_cursor(
    client: httpx.AsyncClient, history: tuple[int, list]
) -> None:
    target_id, rows = history
    first = (await client.get(f"/targets/{target_id}/pings")).json()
    assert len(first["items"]) == 1000 and first["next_cursor"] is not None
    whole = (await client.get(f"/targets/{target_id}/pings", params={"limit": N_PINGS})).json()
    assert whole["next_cursor"] is None
    assert whole["items"] == _expected(rows)


async def test_from_is_inclusive_and_to_exclusive(
    client: httpx.AsyncClient, history: tuple[int, list]
) -> None:
    target_id, rows = history
    params = {"from": _z(rows[100][0]), "to": _z(rows[250][0]), "limit": 100}
    first = (await client.get(f"/targets/{target_id}/pings", params=params)).json()
    second = (
        await client.get(
            f"/targets/{target_id}/pings", params=params | {"cursor": first["next_cursor"]}
        )
    ).json()
    assert second["next_cursor"] is None
    assert first["items"] + second["items"] == _expected(rows[100:250])


async def test_csv_streams_the_same_rows(
    client: httpx.AsyncClient, history: tuple[int, list]
) -> None:
    target_id, rows = history
    async with client.stream(
        "GET", f"/targets/{target_id}/pings", headers={"Accept": "text/csv"}
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/csv")
        text = "".join([chunk async for chunk in response.aiter_text()])
    lines = list(csv.reader(io.StringIO(text)))
    assert lines[0] == ["ts", "rtt_ms", "lost", "hops", "ttl"]
    expected = [
        [
            item["ts"],
            "" if item["rtt_ms"] is None else f"{item['rtt_ms']:g}",
            "true" if item["lost"] else "false",
            "" if item["hops"] is None else str(item["hops"]),
            "" if item["ttl"] is None else str(item["ttl"]),
        ]
        for item in _expected(rows)
    ]
    assert lines[1:] == expected


async def test_csv_respects_the_range(client: httpx.AsyncClient, history: tuple[int, list]) -> None:
    target_id, rows = history
    response = await client.get(
        f"/targets/{target_id}/pings",
        params={"from": _z(rows[10][0]), "to": _z(rows[13][0])},
        headers={"Accept": "text/csv"},
    )
    assert [line.split(",")[0] for line in response.text.splitlines()[1:]] == [
        _z(rows[i][0]) for i in (10, 11, 12)
    ]


async def test_naive_times_are_taken_as_utc(
    client: httpx.AsyncClient, history: tuple[int, list]
) -> None:
    target_id, rows = history
    naive = rows[5][0].replace(tzinfo=None).isoformat()
    page = (
        await client.get(f"/targets/{target_id}/pings", params={"from": naive, "limit": 1})
    ).json()
    assert page["items"][0]["ts"] == _z(rows[5][0])


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"cursor": "garbage"}, "invalid cursor: pass next_cursor exactly as returned"),
        ({"cursor": "cDE6eDp5"}, "invalid cursor: pass next_cursor exactly as returned"),
        ({"limit": 0}, "query.limit: Input should be greater than or equal to 1"),
        ({"limit": 10001}, "query.limit: Input should be less than or equal to 10000"),
        ({"from": "yesterday"}, "query.from: Input should be a valid datetime"),
        (
            {"from": "2024-02-01T00:00:00Z", "to": "2024-01-01T00:00:00Z"},
            "from (2024-02-01T00:00:00Z) is after to (2024-01-01T00:00:00Z)",
        ),
    ],
)
async def test_bad_page_parameters_are_refused(
    client: httpx.AsyncClient, history: tuple[int, list], params: dict, says: str
) -> None:
    target_id, _ = history
    for accept in ("application/json", "text/csv"):
        response = await client.get(
            f"/targets/{target_id}/pings", params=params, headers={"Accept": accept}
        )
        assert response.status_code == 422, response.text
        assert response.json()["error"]["message"].startswith(says)


async def test_a_cursor_of_another_target_is_refused(
    client: httpx.AsyncClient, history: tuple[int, list]
) -> None:
    target_id, _ = history
    cursor = (await client.get(f"/targets/{target_id}/pings", params={"limit": 1})).json()[
        "next_cursor"
    ]
    other = await client.post("/targets", json={"address": unique_address()}, headers=ADMIN)
    response = await client.get(f"/targets/{other.json()['id']}/pings", params={"cursor": cursor})
    assert response.status_code == 422
    assert response.json()["error"]["message"] == (
        f"invalid cursor: it belongs to target {target_id}, not {other.json()['id']}"
    )


async def test_a_target_without_pings_has_an_empty_page(client: httpx.AsyncClient) -> None:
    created = await client.post("/targets", json={"address": unique_address()}, headers=ADMIN)
    response = await client.get(f"/targets/{created.json()['id']}/pings")
    assert response.json() == {"items": [], "next_cursor": None}


async def test_packed_pings_are_served_like_rows(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    created = await client.post("/targets", json={"address": unique_address()}, headers=ADMIN)
    target_id: int = created.json()["id"]
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = midnight - timedelta(days=3, minutes=30, microseconds=-17)  # across a midnight
    rows = [
        (start + timedelta(seconds=i, microseconds=i * 37 % 900), None if i % 11 == 0 else 900 + i)
        for i in range(3000)
    ]
    records = [
        (target_id, ts, rtt, None if rtt is None else 60, None if rtt is None else 4)
        for ts, rtt in rows
    ]
    await pool.execute("SELECT ensure_ping_partitions(current_date - 4, current_date)")
    await pool.copy_records_to_table(
        "pings",
        records=records[:2000] + records[2500:],
        columns=["target_id", "ts", "rtt_us", "ttl", "hops"],
    )
    assert await pool.fetchval("SELECT ladder_pack(10)") >= 2500
    # Late pings land in row form beside the packed blocks of their hour.
    await pool.copy_records_to_table(
        "pings", records=records[2000:2500], columns=["target_id", "ts", "rtt_us", "ttl", "hops"]
    )
    expected = _expected([(ts, rtt, ttl, hops) for _, ts, rtt, ttl, hops in records])

    items: list[dict] = []
    params: dict = {"limit": 700}
    while True:
        page = (await client.get(f"/targets/{target_id}/pings", params=params)).json()
        items += page["items"]
        if page["next_cursor"] is None:
            break
        params["cursor"] = page["next_cursor"]
    assert items == expected
    window = {"from": _z(rows[1990][0]), "to": _z(rows[2010][0]), "limit": 100}
    page = (await client.get(f"/targets/{target_id}/pings", params=window)).json()
    assert page["items"] == expected[1990:2010]
    response = await client.get(f"/targets/{target_id}/pings", headers={"Accept": "text/csv"})
    lines = response.text.splitlines()
    assert [line.split(",")[:3] for line in lines[1:]] == [
        [e["ts"], "" if e["rtt_ms"] is None else f"{e['rtt_ms']:g}", str(e["lost"]).lower()]
        for e in expected
    ]
