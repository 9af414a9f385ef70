"""The API's answers to a fixed script of requests over fixed data, made comparable.

One target of every kind created through the API and changed every way it
can be, bulk creation, tags, the errors each way in gives, raw pings (pages,
cursors, CSV), newest results, six hours of laddered history
(tests/history_data.py) and months of seeded history (pingtrack/seed.py)
read through every history route, storage, fleet, metrics, health,
traceroutes, the dashboard and the OpenAPI document.

`record` returns every answer (status, content type, body) with what varies
from run to run masked: timestamps are written relative to the midnight
(UTC) the run started in, those of the last minutes (created_at, ...) as
`<now>`, and ages, lags and measured bytes as `<n>`. Everything else is kept
byte for byte, so two runs on one day compare equal unless an answer changed.
tests/test_api_answers.py compares a run with tests/api_answers.json.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
from pydantic import SecretStr

from pingtrack.seed import SeedOptions, seed_history
from shared.settings import Settings
from tests.api_client import ADMIN, CommandTap, api_client
from tests.history_data import laddered

Answer = dict[str, Any]
DAY = timedelta(days=1)
RECENT = timedelta(minutes=15)  # a time this close to the run's clock is `<now>`
_TIME = re.compile(r"(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})?")
_CURSOR = re.compile(r'("next_cursor":")([A-Za-z0-9_-]+)(")')
_VOLATILE_NUMBER = re.compile(
    r'("(?:age_s|heartbeat_age_s|[a-z_]*bytes[a-z_]*|value|contraction|rows)":)(-?[0-9.e+-]+)'
)

LAB = {"address": "192.0.2.10", "name": "gw", "interval_s": 600, "tags": ["core", "lab"]}
TARGETS: dict[str, dict[str, Any]] = {
    "icmp4": LAB,
    "icmp6": {"address": "2001:db8::1", "interval_s": 900, "timeout_s": 2},
    "named": {"hostname": "Host.Example.", "family": "ipv6", "interval_s": 600, "tags": ["lab"]},
    "tcp": {"kind": "tcp", "address": "192.0.2.11", "port": 5432, "interval_s": 600},
    "tcp_named": {
        "kind": "tcp",
        "hostname": "db.example",
        "port": 443,
        "family": "ipv4",
        "interval_s": 600,
        "tags": ["db"],
    },
    "http": {
        "kind": "http",
        "url": "HTTPS://Web.Example/health?x=1",
        "expect_status": 204,
        "expect_body": "ok",
        "family": "ipv4",
        "interval_s": 600,
        "tags": ["web"],
    },
    "head": {
        "kind": "http",
        "url": "http://web.example:8080",
        "http_method": "HEAD",
        "interval_s": 600,
    },
    "spare": {"address": "192.0.2.30", "name": "spare", "interval_s": 60},
}
BAD_TARGETS: list[Any] = [
    {"address": "not-an-ip"},
    {"address": "224.0.0.1"},
    {"address": " "},
    {"address": "fe80::1%eth0"},
    {"hostname": "10.0.0.1"},
    {"hostname": "bad_name.example"},
    {"address": "192.0.2.12", "hostname": "x.example"},
    {"kind": "tcp", "address": "192.0.2.12"},
    {"kind": "tcp", "address": "192.0.2.12", "port": 70000},
    {"address": "192.0.2.12", "port": 80},
    {"address": "192.0.2.12", "family": "ipv4"},
    {"url": "https://x.example/"},
    {"kind": "http", "address": "192.0.2.12", "url": "https://x.example/"},
    {"kind": "http", "url": "ftp://x.example/"},
    {"kind": "http", "url": "http://user:pw@x.example/"},
    {"kind": "http", "url": "https://x.example/", "interval_s": 1},
    {"kind": "http", "url": "https://x.example/", "http_method": "HEAD", "expect_body": "x"},
    {"kind": "http", "url": "https://x.example/", "expect_status": 99},
    {"kind": "ftp", "address": "192.0.2.12"},
    {"address": "192.0.2.12", "interval_s": "2"},
    {"address": "192.0.2.12", "interval": 2},
    {"address": "192.0.2.12", "interval_s": 0.01},
    {"address": "192.0.2.12", "timeout_s": 100},
    {"address": "192.0.2.12", "tags": ["bad tag"]},
    {"address": "192.0.2.12", "name": "x" * 201},
    LAB,
    [],
]


@dataclasses.dataclass
class Clock:
    """The run's clock and the midnight every recorded time is written from."""

    now: datetime
    anchor: datetime

    @classmethod
    def start(cls) -> Clock:
        now = datetime.now(UTC)
        return cls(now, now.replace(hour=0, minute=0, second=0, microsecond=0))

    def time(self, match: re.Match[str]) -> str:
        date, clock, fraction, zone = match.groups()
        ts = datetime.fromisoformat(f"{date}T{clock}{fraction or ''}")
        zone = zone or ""
        if abs(ts.replace(tzinfo=UTC) - self.now) < RECENT:
            return f"<now{zone}>"
        days, rest = divmod(ts.replace(tzinfo=UTC) - self.anchor, DAY)
        hours, seconds = divmod(rest.seconds, 3600)
        clock = f"{hours:02}:{seconds // 60:02}:{seconds % 60:02}"
        return f"t{days:+d}d+{clock}{fraction or ''}{zone}"

    def cursor(self, match: re.Match[str]) -> str:
        raw = match.group(2)
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
        version, owner, micros = text.split(":")
        ts = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=int(micros))
        shown = _TIME.sub(self.time, ts.isoformat())
        return f"{match.group(1)}<cursor {version} {owner} {shown}>{match.group(3)}"

    def normalise(self, text: str) -> str:
        text = _CURSOR.sub(self.cursor, text)
        return _TIME.sub(self.time, text)


def _volatile_numbers(text: str) -> str:
    return _VOLATILE_NUMBER.sub(r'\1"<n>"', text)


def _storage(measured: bool) -> Callable[[str], str]:
    """Storage without what depends on disk pages or on where seeding cut the levels:
    the figures measured now and, when they are measured, what is computed from them."""

    def mask(text: str) -> str:
        body = json.loads(text)
        now = body["now"]
        now["tiers"] = [
            {k: v if k == "tier" else "<n>" for k, v in t.items()} for t in now["tiers"]
        ]
        now["total_bytes"] = "<n>"
        if measured:
            return _volatile_numbers(json.dumps(body, ensure_ascii=False, separators=(",", ":")))
        return json.dumps(body, ensure_ascii=False, separators=(",", ":"))

    return mask


def _metrics(text: str) -> str:
    """Sample values of ages, lags and durations masked; every line kept."""
    lines = []
    for line in text.splitlines():
        name = line.split("{")[0].split(" ")[0]
        if not line.startswith("#") and any(w in name for w in ("age", "lag", "duration")):
            line = line.rsplit(" ", 1)[0] + " <n>"
        lines.append(line)
    return "\n".join(lines) + ("\n" if text.endswith("\n") else "")


def _health(text: str) -> str:
    """The pipeline's state without the ladder's clock (its record began with the database)."""
    body = json.loads(text)
    body["reasons"] = [r for r in body["reasons"] if not r.startswith("ladder: no round")]
    ladder = body["ladder"]
    if ladder is not None:
        body["ladder"] = {k: type(v).__name__ for k, v in ladder.items()} | {
            "lag_s": sorted(ladder["lag_s"])
        }
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


def _digest(text: str) -> str:
    return f"<{len(text)} characters, sha256 {hashlib.sha256(text.encode()).hexdigest()}>"


def _body(text: str) -> Answer:
    """The body in the form that diffs best and still says every byte: parsed JSON when it
    renders back to the same text, else its lines."""
    try:
        parsed = json.loads(text)
    except ValueError:
        return {"lines": text.split("\n")}
    if json.dumps(parsed, ensure_ascii=False, separators=(",", ":")) == text:
        return {"json": parsed}
    return {"lines": text.split("\n")}


class Recorder:
    def __init__(self, client: httpx.AsyncClient, clock: Clock) -> None:
        self.client = client
        self.clock = clock
        self.answers: list[Answer] = []

    async def __call__(
        self,
        method: str,
        url: str,
        *,
        mask: Callable[[str], str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        response = await self.client.request(method, url, **kwargs)
        text = self.clock.normalise(response.text)
        if mask is not None:
            text = mask(text)
        shown = {k: v for k, v in kwargs.items() if k in ("params", "json", "content")}
        if "headers" in kwargs:
            shown["headers"] = sorted(kwargs["headers"])
        answer: Answer = {
            "request": f"{method} {url}",
            **(
                {"with": self.clock.normalise(json.dumps(shown, default=bytes.decode))}
                if shown
                else {}
            ),
            "status": response.status_code,
            "content_type": response.headers.get("content-type"),
            **_body(text),
        }
        if "content-disposition" in response.headers:
            answer["content_disposition"] = response.headers["content-disposition"]
        self.answers.append(answer)
        return response


def _z(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


async def _seed_data(settings: Settings, clock: Clock) -> tuple[int, datetime, int, datetime]:
    """(seeded target, its end, laddered target, its start): the history every read reads."""
    end = clock.anchor - DAY
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
    try:
        options = SeedOptions(targets=1, years=0.3, raw=timedelta(days=2), end=end, seed=11)
        seeded = await seed_history(pool, options)
    finally:
        await pool.close()
    six_hours = await laddered(settings.database_url, 3, address="198.51.100.7", seed=7)
    return seeded.target_ids[0], end, six_hours.target_id, six_hours.start


async def _side_data(settings: Settings, clock: Clock, ids: dict[str, int]) -> None:
    """What probers and the CLI would have stored: results, resolutions, a trace, a prober."""
    at = clock.anchor - DAY + timedelta(hours=6)
    conn = await asyncpg.connect(settings.database_url)
    try:
        await conn.execute("SELECT ensure_ping_partitions($1, $2)", at.date(), at.date())
        for n, key in enumerate(("icmp4", "named", "tcp_named", "http")):
            await conn.execute(
                "INSERT INTO pings (target_id, ts, rtt_us, ttl, hops) VALUES"
                " ($1, $2, $3, 60, 4), ($1, $2 + interval '10 minutes', NULL, NULL, NULL),"
                " ($1, $2 + interval '20 minutes', $3 + 1234, 59, 5)",
                ids[key],
                at + timedelta(seconds=n),
                10_000 + n,
            )
        await conn.execute(
            "INSERT INTO target_addresses (target_id, ts, address, error) VALUES"
            " ($1, $3, '192.0.2.50', NULL), ($1, $3 + interval '30 minutes', NULL, 'NXDOMAIN'),"
            " ($2, $3, '192.0.2.51', NULL)",
            ids["named"],
            ids["http"],
            at - timedelta(minutes=5),
        )
        await conn.execute(
            "INSERT INTO probe_details (target_id, ts, status, ttfb_us, cert_expires_at, error)"
            " SELECT target_id, ts, 503, 12500, '2030-01-02T03:04:05Z', 'status' FROM pings"
            " WHERE target_id = $1",
            ids["http"],
        )
        await conn.execute(
            "INSERT INTO traceroutes (target_id, ts, reached, hops) VALUES ($1, $2, true, $3)",
            ids["icmp4"],
            at,
            json.dumps([{"ttl": 1, "address": "192.0.2.1", "rtt_ms": 0.25}] * 2),
        )
        await conn.execute(
            # Seen in a few minutes: live however long the script takes.
            "INSERT INTO probers (fleet, id, instance, started_at, last_seen, shards, stats)"
            " VALUES ($1, 'prober-a', gen_random_uuid(), $2, now() + interval '5 minutes',"
            " '{1,2,3}',"
            ' \'{"targets": 3, "sent": 120, "send_rate": 0.5, "note": "x"}\')',
            settings.amqp_prefix,
            at,
        )
    finally:
        await conn.close()


async def _targets(call: Recorder) -> dict[str, int]:
    ids = {}
    for key, body in TARGETS.items():
        ids[key] = (await call("POST", "/targets", json=body, headers=ADMIN)).json()["id"]
    for body in BAD_TARGETS:
        await call("POST", "/targets", json=body, headers=ADMIN)
    as_json = {**ADMIN, "Content-Type": "application/json"}
    await call("POST", "/targets", content=b'{"address": ', headers=as_json)
    await call("POST", "/targets", json={"address": "192.0.2.13"})
    await call("POST", "/targets", json={"address": "192.0.2.13"}, headers={"Authorization": "x"})
    wrong = {"Authorization": "Bearer wrong"}
    await call("POST", "/targets", json={"address": "192.0.2.13"}, headers=wrong)
    await call(
        "POST",
        "/targets:bulk",
        headers=ADMIN,
        json={
            "targets": [
                {"address": "192.0.2.40", "tags": ["bulk"], "interval_s": 600},
                {"address": "192.0.2.40"},
                {"kind": "tcp", "hostname": "bulk.example", "port": 22, "interval_s": 600},
                {"address": "192.0.2.10"},
                {"address": "nope"},
                {"address": "192.0.2.41", "interval_s": "1"},
                "not an object",
                {"kind": "http", "url": "https://bulk.example/", "interval_s": 600},
            ]
        },
    )
    await call("POST", "/targets:bulk", headers=ADMIN, json={"targets": "x"})
    await call("POST", "/targets:bulk", headers=ADMIN, json={"targets": []})
    return ids


async def _changes(call: Recorder, ids: dict[str, int]) -> None:
    one = f"/targets/{ids['icmp4']}"
    for path in (one, "/targets/999999", "/targets/0", "/targets/9223372036854775808"):
        await call("GET", path)
    await call("GET", "/targets/abc")
    await call("PATCH", one, json={"name": "gateway", "interval_s": 300}, headers=ADMIN)
    await call("PATCH", one, json={}, headers=ADMIN)
    await call("PATCH", one, json={"timeout_s": None, "name": None}, headers=ADMIN)
    await call("PATCH", f"/targets/{ids['named']}", json={"address": "192.0.2.20"}, headers=ADMIN)
    await call("PATCH", f"/targets/{ids['tcp']}", json={"kind": "icmp"}, headers=ADMIN)
    await call("PATCH", f"/targets/{ids['tcp']}", json={"kind": "tcp"}, headers=ADMIN)
    await call("PATCH", f"/targets/{ids['tcp_named']}", json={"hostname": "x"}, headers=ADMIN)
    await call(
        "PATCH",
        f"/targets/{ids['http']}",
        json={"expect_status": None, "tags": None, "http_method": "HEAD", "expect_body": None},
        headers=ADMIN,
    )
    await call("PATCH", f"/targets/{ids['head']}", json={"kind": "tcp"}, headers=ADMIN)
    await call("PATCH", f"/targets/{ids['head']}", json={"port": 80}, headers=ADMIN)
    spare = f"/targets/{ids['spare']}"
    await call("PATCH", spare, json={"address": "2001:db8::1"}, headers=ADMIN)
    await call("PATCH", spare, json={"interval_s": 0.05}, headers=ADMIN)
    await call("PATCH", "/targets/999999", json={"name": "x"}, headers=ADMIN)
    for action in ("pause", "pause", "resume", "resume"):
        await call("POST", f"{one}/{action}", headers=ADMIN)
    six = f"/targets/{ids['icmp6']}"
    for action in ("stop", "pause", "resume", "stop"):
        await call("POST", f"{six}/{action}", headers=ADMIN)
    await call("POST", "/targets/999999/pause", headers=ADMIN)
    await call("DELETE", spare, headers=ADMIN)
    await call("DELETE", spare, headers=ADMIN)
    await call("PATCH", spare, json={"name": "again"}, headers=ADMIN)
    await call("POST", f"{spare}/resume", headers=ADMIN)
    await call("DELETE", f"/targets/{ids['head']}", params={"purge": "true"}, headers=ADMIN)
    await call("DELETE", f"/targets/{ids['head']}", params={"purge": "true"}, headers=ADMIN)
    await call("POST", "/targets/pause", params={"tag": "lab"}, headers=ADMIN)
    await call("POST", "/targets/pause", params={"tag": ["lab", "core"]}, headers=ADMIN)
    await call("POST", "/targets/resume", params={"tag": "lab"}, headers=ADMIN)
    await call("POST", "/targets/pause", headers=ADMIN)
    await call("POST", "/targets/resume", params={"tag": "bad tag"}, headers=ADMIN)
    await call("POST", "/targets/pause", params={"tag": "nobody"}, headers=ADMIN)


async def _listings(call: Recorder, ids: dict[str, int]) -> None:
    for params in (
        {},
        {"state": "all"},
        {"state": "paused"},
        {"state": "deleted"},
        {"state": "bogus"},
        {"tag": "lab"},
        {"tag": ["lab", "core"]},
        {"tag": "bad tag"},
    ):
        await call("GET", "/targets", params=params)
        await call("GET", "/results/latest", params=params, mask=_volatile_numbers)
    for key in ("icmp4", "named", "tcp_named", "http", "icmp6"):
        await call("GET", f"/targets/{ids[key]}/latest", mask=_volatile_numbers)
    await call("GET", "/targets/999999/latest")


async def _pings(call: Recorder, target: int, start: datetime, other: int) -> None:
    path = f"/targets/{target}/pings"
    window = {
        "from": _z(start + timedelta(hours=1, minutes=10)),
        "to": _z(start + timedelta(hours=1, minutes=12)),
    }
    first = await call("GET", path, params={**window, "limit": 5})
    cursor = first.json()["next_cursor"]
    await call("GET", path, params={**window, "limit": 3, "cursor": cursor})
    await call("GET", path, params={"from": _z(start), "limit": 3})
    await call("GET", path, params={"to": _z(start + timedelta(minutes=1)), "limit": 2})
    await call("GET", path, params={**window, "limit": 0})
    await call("GET", path, params={**window, "limit": 10_001})
    await call("GET", path, params={**window, "cursor": "garbage"})
    await call("GET", f"/targets/{other}/pings", params={"cursor": cursor})
    await call("GET", path, params={"from": window["to"], "to": window["from"]})
    await call("GET", "/targets/999999/pings")
    await call("GET", path, params=window, headers={"Accept": "text/csv"})
    await call("GET", path, params={**window, "cursor": cursor}, headers={"Accept": "text/csv"})
    await call("GET", path, params={"cursor": "garbage"}, headers={"Accept": "text/csv"})
    await call("GET", f"/targets/{other}/pings", params={"limit": 10})


async def _history(call: Recorder, target: int, start: datetime) -> None:
    base = f"/targets/{target}"
    whole = {"from": _z(start), "to": _z(start + timedelta(hours=6))}
    loss = {
        "from": _z(start + timedelta(hours=1)),
        "to": _z(start + timedelta(hours=1, minutes=30)),
    }
    for points in (6, 40, 1, 7):
        await call("GET", f"{base}/series", params={**whole, "points": points})
    await call("GET", f"{base}/series", params={**loss, "points": 90})
    await call("GET", f"{base}/series", params={**whole, "points": 0})
    await call("GET", f"{base}/series", params={**whole, "points": 5001})
    await call("GET", f"{base}/series", params={"from": whole["to"], "to": whole["from"]})
    future = _z(start + timedelta(days=30))
    await call("GET", f"{base}/series", params={"from": future, "to": future})
    for level in (1, 2, 3):
        await call("GET", f"{base}/segments", params={**loss, "level": level, "limit": 5})
    await call("GET", f"{base}/segments", params={**whole, "level": 2, "limit": 30})
    await call("GET", f"{base}/segments", params={**loss, "level": 9})
    await call("GET", f"{base}/segments", params={**loss, "level": 40})
    await call("GET", f"{base}/segments", params={**loss, "limit": 0})
    await call("GET", f"{base}/events", params=whole)
    await call("GET", f"{base}/events", params=loss)
    await call("GET", f"{base}/stats", params=loss)
    await call("GET", f"{base}/stats", params=whole)
    await call("GET", f"{base}/stats", params={"from": whole["to"], "to": whole["from"]})
    for route in ("series", "segments", "events", "stats"):
        await call("GET", f"/targets/999999/{route}", params=whole)


async def _seeded(call: Recorder, target: int, end: datetime) -> None:
    """Reads of the seeded months, each range two days or more from where a level's
    retention ends (30 and 90 days back), so the run's time of day does not matter."""
    base = f"/targets/{target}"

    def days(a: int, b: int) -> dict[str, str]:
        return {"from": _z(end - timedelta(days=a)), "to": _z(end - timedelta(days=b))}

    await call("GET", f"{base}/series", params={**days(60, 0), "points": 60})
    await call("GET", f"{base}/series", params={**days(20, 19), "points": 48})
    await call("GET", f"{base}/series", params={**days(60, 58), "points": 24})
    await call("GET", f"{base}/series", params={**days(108, 92), "points": 30})
    await call("GET", f"{base}/series", params={**days(2, 0), "points": 48})
    await call("GET", f"{base}/stats", params=days(26, 16))
    await call("GET", f"{base}/stats", params=days(60, 40))
    await call("GET", f"{base}/stats", params=days(105, 95))
    await call("GET", f"{base}/events", params=days(25, 24))
    await call("GET", f"{base}/events", params=days(61, 60))
    await call("GET", f"{base}/segments", params={**days(60, 58), "level": 2, "limit": 10})
    await call("GET", f"{base}/segments", params={**days(100, 99), "level": 3, "limit": 10})


async def _storage_calls(call: Recorder, measured: bool) -> None:
    await call("GET", "/storage", mask=_storage(measured))
    fleet = {"targets": 1000, "interval_s": 10, "years": 2}
    await call("GET", "/storage", params=fleet, mask=_storage(measured))


async def _operations(call: Recorder, ids: dict[str, int]) -> None:
    await _storage_calls(call, measured=True)
    for params in ({"targets": 0}, {"years": 0}, {"interval_s": 0.01}):
        await call("GET", "/storage", params=params)
    await call("DELETE", "/storage")
    await call("GET", "/fleet", mask=_volatile_numbers)
    await call("GET", "/metrics", mask=_metrics)
    await call("GET", "/health", mask=_health)
    await call("GET", f"/targets/{ids['icmp4']}/traceroute")
    await call("GET", f"/targets/{ids['tcp']}/traceroute")
    await call("GET", "/targets/999999/traceroute")
    await call("POST", f"/targets/{ids['http']}/traceroute", headers=ADMIN)
    await call("POST", "/targets/999999/traceroute", headers=ADMIN)
    await call("POST", f"/targets/{ids['icmp4']}/traceroute")
    await call("GET", "/nowhere")
    await call("GET", "/", mask=_digest)
    await call("GET", "/docs")
    await call("GET", "/openapi.json")


async def _read_token(settings: Settings, clock: Clock) -> list[Answer]:
    protected = settings.model_copy(update={"read_token": SecretStr("reader-token")})
    reader = {"Authorization": "Bearer reader-token"}
    async with api_client(protected) as client:
        call = Recorder(client, clock)
        await call("GET", "/targets/999999")
        await call("GET", "/targets/999999", headers=reader)
        await call("GET", "/targets/999999", headers=ADMIN)
        await call("GET", "/targets/999999", headers={"Authorization": "Bearer wrong"})
        await call("POST", "/targets", json={"address": "192.0.2.99"}, headers=reader)
        await call("GET", "/health", mask=_health)
    return call.answers


async def record(settings: Settings) -> list[Answer]:
    """Every answer of the script, in order, then the commands published meanwhile.

    `settings` must name a database of its own (target ids are part of the answers).
    """
    clock = Clock.start()
    async with CommandTap.open(settings) as tap, api_client(settings) as client:
        call = Recorder(client, clock)
        await _storage_calls(call, measured=False)  # nothing stored yet: the defaults
        seeded, seeded_end, six_hours, six_start = await _seed_data(settings, clock)
        ids = await _targets(call)
        await _side_data(settings, clock, ids)
        await _changes(call, ids)
        await _listings(call, ids)
        await _pings(call, six_hours, six_start, ids["icmp4"])
        await _history(call, six_hours, six_start)
        await _seeded(call, seeded, seeded_end)
        await _operations(call, ids)
        published = await tap.take()
    # By content: the order of a command's keys is no part of it (probers read it by name).
    commands = sorted(
        (json.dumps(dataclasses.asdict(p.spec), sort_keys=True), p.routing_key, p.persistent)
        for p in published
    )
    answers = call.answers + await _read_token(settings, clock)
    return [*answers, {"commands": [list(c) for c in commands]}]
