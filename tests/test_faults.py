"""The fault matrix: real processes, real faults, every ping accounted for.

Each test runs `pingtrack writer`, `pingtrack prober` and `pingtrack api` as
child processes against a private PostgreSQL cluster and a private RabbitMQ
node (stopping the shared ones would break everyone else's tests), pings a
few loopback targets every second, injects one fault, lets the stack recover
on its own, stops every service with SIGTERM, and then checks per target:
stored pings == pings the probers sent, no duplicate, no hole except the
slots the probers announced as skipped or a killed prober could not ping.

Set PINGTRACK_FAULT_REPORT=path to append each fault's figures there as JSON,
and PINGTRACK_FAULT_SPOOL_OUTAGE_S to lengthen the broker outage of the spool
test (40 s by default, to keep the suite short; RELIABILITY.md has a 5-minute run).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiormq
import asyncpg
import httpx
import pytest

from prober_service.main import FLUSH_TIMEOUT_S
from shared.constants import Topology
from tests.conftest import ADMIN_TOKEN, eventually
from tests.fault_accounting import TargetAccount, account, prober_counts
from tests.private_services import (  # noqa: F401  (fixtures)
    PrivatePostgres,
    PrivateRabbit,
    private_postgres_fixture,
    private_rabbit_fixture,
)
from tests.stack import ServiceProcess, free_port, wait_healthy

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(240),
    pytest.mark.skipif(os.geteuid() != 0, reason="raw ICMP needs root or CAP_NET_RAW"),
]

ADDRESSES = [f"127.0.0.{n}" for n in range(10, 15)]
INTERVAL_S = 1.0
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
# SIGTERM to exit: a prober waits for its pings in flight (1 s timeout) first.
CLEAN_EXIT_S = 8.0
PG_OUTAGE_S = 60.0
# The spool test: many targets, a long broker outage, a kill -9 in its middle.
SPOOL_OUTAGE_S = float(os.environ.get("PINGTRACK_FAULT_SPOOL_OUTAGE_S", "40"))
SPOOL_ADDRESSES = [f"127.20.{i // 250}.{i % 250 + 1}" for i in range(300)]


@dataclass
class Stack:
    """The services of one test, on the module's private PostgreSQL and RabbitMQ."""

    pg: PrivatePostgres
    rabbit: PrivateRabbit
    database_url: str
    logs: Path
    prefix: str = field(default_factory=lambda: f"pt-fault-{uuid.uuid4().hex[:8]}")
    api_port: int = field(default_factory=free_port)
    services: dict[str, ServiceProcess] = field(default_factory=dict)
    retired: list[ServiceProcess] = field(default_factory=list)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def start(self, name: str) -> ServiceProcess:
        """Start `name` ("writer", "api", "prober", "prober-2", …) as its own process."""
        command = name.split("-")[0]
        env = {
            "PINGTRACK_DATABASE_URL": self.database_url,
            "PINGTRACK_AMQP_URL": self.rabbit.url,
            "PINGTRACK_AMQP_PREFIX": self.prefix,
            "PINGTRACK_API_HOST": "127.0.0.1",
            "PINGTRACK_API_PORT": str(self.api_port),
            "PINGTRACK_WEB_PORT": "0",
            "PINGTRACK_ADMIN_TOKEN": ADMIN_TOKEN,
            "PINGTRACK_BATCH_MAX_DELAY_S": "0.2",
            "PINGTRACK_RECONCILE_INTERVAL_S": "5",
            "PINGTRACK_PROBER_ID": name,
            "PINGTRACK_LOG_LEVEL": "INFO",
            "PINGTRACK_LOG_FORMAT": "json",
        }
        process = ServiceProcess(command, env, self.logs / f"{name}.log")
        process.start()
        self.services[name] = process
        return process

    def kill(self, name: str) -> None:
        process = self.services.pop(name)
        process.kill()
        self.retired.append(process)

    def stop(self, name: str) -> float:
        """SIGTERM; assert a clean exit; return how long it took."""
        process = self.services.pop(name)
        started = time.monotonic()
        code = process.stop(timeout=30)
        took = time.monotonic() - started
        self.retired.append(process)
        assert code == 0, f"{name} exited {code}\n{process.log()}"
        assert took < CLEAN_EXIT_S, f"{name} took {took:.1f}s to stop\n{process.log()}"
        return took

    def kill_all(self) -> None:
        for name in list(self.services):
            self.kill(name)

    def prober_logs(self) -> list[str]:
        return [
            line
            for path in sorted(self.logs.glob("prober*.log"))
            for line in path.read_text(errors="replace").splitlines()
        ]


@pytest.fixture
async def stack(
    private_postgres: PrivatePostgres, private_rabbit: PrivateRabbit, tmp_path: Path
) -> AsyncIterator[Stack]:
    if private_rabbit.process is None:  # a failed restart in an earlier test
        private_rabbit.start()
    if not private_postgres.running():
        private_postgres.start()
    url = await private_postgres.new_database()
    stack = Stack(private_postgres, private_rabbit, url, tmp_path)
    try:
        yield stack
    finally:
        stack.kill_all()


async def stored_pings(stack: Stack) -> dict[int, list[asyncpg.Record]]:
    conn = await asyncpg.connect(stack.database_url)
    try:
        rows = await conn.fetch("SELECT target_id, ts, rtt_us FROM pings ORDER BY target_id, ts")
    finally:
        await conn.close()
    found: dict[int, list[asyncpg.Record]] = {}
    for row in rows:
        found.setdefault(row["target_id"], []).append(row)
    return found


async def queue_state(stack: Stack) -> tuple[int, int]:
    """(messages waiting, consumers) on the results queue."""
    connection = await aiormq.connect(stack.rabbit.url)
    try:
        channel = await connection.channel()
        ok = await channel.queue_declare(Topology(stack.prefix).results_queue, passive=True)
        return int(ok.message_count or 0), int(ok.consumer_count or 0)
    finally:
        await connection.close()


async def health(stack: Stack) -> tuple[int, dict[str, Any]]:
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=5) as client:
        response = await client.get("/health")
    return response.status_code, response.json()


def reason_reported(stack: Stack, words: str, status: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        code, body = await health(stack)
        return code == status and any(words in reason for reason in body["reasons"])

    return check


async def start_tracking(stack: Stack) -> dict[int, str]:
    """Start the services, add the targets, and wait for their first stored pings."""
    stack.start("writer")
    stack.start("prober")
    api = stack.start("api")
    await asyncio.to_thread(wait_healthy, stack.api_url, api)
    targets: dict[int, str] = {}
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=10) as client:
        for address in ADDRESSES:
            body = {"address": address, "interval_s": INTERVAL_S}
            response = await client.post("/targets", json=body, headers=AUTH)
            assert response.status_code == 201, response.text
            targets[response.json()["id"]] = address
    await pinged_since(stack, targets, time.time(), at_least=3, timeout=30)
    return targets


async def pinged_since(
    stack: Stack, targets: dict[int, str], since: float, *, at_least: int = 1, timeout: float
) -> None:
    async def check() -> bool:
        stored = await stored_pings(stack)
        return all(
            sum(1 for p in stored.get(t, []) if p["ts"].timestamp() >= since) >= at_least
            for t in targets
        )

    await eventually(check, timeout=timeout, interval=0.5)


async def settle_and_account(
    stack: Stack,
    targets: dict[int, str],
    fault: str,
    *,
    counted_from: float = float("-inf"),
    excused: tuple[float, float] | None = None,
    **extra: object,
) -> list[TargetAccount]:
    """Stop probers (they log their counts), let the writer drain, stop the rest, account."""
    exits = {name: stack.stop(name) for name in [n for n in stack.services if "prober" in n]}
    counts = prober_counts(stack.prober_logs())
    assert counts.dropped == 0 and counts.unpublished == 0, counts

    async def drained() -> bool:
        depth, _ = await queue_state(stack)
        stored = await stored_pings(stack)
        done = all(
            sum(1 for p in stored.get(t, []) if p["ts"].timestamp() >= counted_from)
            >= counts.sent[t]
            for t in targets
        )
        return depth == 0 and done

    await eventually(drained, timeout=60, interval=0.5)
    exits |= {name: stack.stop(name) for name in list(stack.services)}
    stored = await stored_pings(stack)
    accounts = [
        account(
            t,
            [p["ts"].timestamp() for p in stored[t]],
            sum(1 for p in stored[t] if p["rtt_us"] is None),
            INTERVAL_S,
            counts,
            counted_from=counted_from,
            excused=excused,
        )
        for t in targets
    ]
    record(fault, accounts, exits, **extra)
    return accounts


def record(
    fault: str,
    accounts: list[TargetAccount],
    exits: dict[str, float],
    **extra: object,
) -> None:
    path = os.environ.get("PINGTRACK_FAULT_REPORT")
    if not path:
        return
    totals = {k: sum(a.figures()[k] for a in accounts) for k in accounts[0].figures()}
    totals.pop("target_id")
    entry = {
        "fault": fault,
        "targets": len(accounts),
        **totals,
        "sigterm_exit_s": exits,
        **extra,
    }
    with open(path, "a") as out:
        out.write(json.dumps(entry) + "\n")


def assert_sound(accounts: list[TargetAccount]) -> None:
    broken = [a.as_dict() for a in accounts if not a.sound]
    assert not broken, "unsound accounts:\n" + "\n".join(json.dumps(b) for b in broken)
    assert all(a.lost == 0 for a in accounts), "loopback never loses a ping"


async def test_writer_killed_mid_stream_loses_and_doubles_nothing(stack: Stack) -> None:
    targets = await start_tracking(stack)
    stack.kill("writer")
    killed_at = time.time()
    # The results wait in the queue, and /health names the missing writer.
    await eventually(lambda: queue_state(stack), timeout=10)
    await eventually(reason_reported(stack, "writer: nobody consumes", 200), timeout=10)
    stack.start("writer-2")
    await pinged_since(stack, targets, killed_at + 3, timeout=30)
    _, body = await health(stack)
    assert body["checks"]["results_consumers"] == 1
    assert_sound(await settle_and_account(stack, targets, "kill -9 writer"))


async def test_rabbitmq_restart_loses_and_doubles_nothing(stack: Stack) -> None:
    targets = await start_tracking(stack)
    await asyncio.to_thread(stack.rabbit.stop)
    await eventually(reason_reported(stack, "broker unreachable", 503), timeout=10)
    await asyncio.sleep(3)  # the probers keep pinging into their buffers
    await asyncio.to_thread(stack.rabbit.start)
    back_at = time.time()
    await pinged_since(stack, targets, back_at + 2, timeout=60)
    accounts = await settle_and_account(stack, targets, "restart RabbitMQ")
    assert_sound(accounts)
    # Nothing was skipped: the probers pinged on through the outage.
    assert all(a.announced == 0 for a in accounts), [a.as_dict() for a in accounts]


async def test_postgres_down_for_a_minute_loses_and_doubles_nothing(stack: Stack) -> None:
    targets = await start_tracking(stack)
    await asyncio.to_thread(stack.pg.stop)
    down_at = time.monotonic()
    await eventually(reason_reported(stack, "database unreachable", 503), timeout=15)
    # The writer stops consuming and the queue holds the results.
    await eventually(lambda: _writer_paused_with_backlog(stack), timeout=30, interval=0.5)
    await asyncio.sleep(max(0.0, PG_OUTAGE_S - (time.monotonic() - down_at)))
    await asyncio.to_thread(stack.pg.start)
    back_at = time.time()
    await pinged_since(stack, targets, back_at + 2, timeout=60)
    accounts = await settle_and_account(stack, targets, "stop PostgreSQL 60 s")
    assert_sound(accounts)
    # The network was fine all along: a database outage must not blind the probers.
    assert all(a.announced == 0 for a in accounts), [a.figures() for a in accounts]


async def _writer_paused_with_backlog(stack: Stack) -> bool:
    depth, consumers = await queue_state(stack)
    return depth > 0 and consumers == 0


async def test_prober_killed_and_replaced_leaves_only_its_own_gap(stack: Stack) -> None:
    targets = await start_tracking(stack)
    stack.kill("prober")
    killed_at = time.time()
    await eventually(reason_reported(stack, "stale", 200), timeout=15)
    await eventually(reason_reported(stack, "probers: none alive", 200), timeout=15)
    stack.start("prober-2")
    await pinged_since(stack, targets, killed_at + 1, timeout=30)
    stored = await stored_pings(stack)
    # The replacement's first ping closes the window the dead prober left.
    resumed_at = max(
        min(p["ts"].timestamp() for p in stored[t] if p["ts"].timestamp() > killed_at)
        for t in targets
    )
    accounts = await settle_and_account(
        stack,
        targets,
        "kill -9 prober, start another",
        counted_from=killed_at,
        excused=(killed_at - 2 * INTERVAL_S, resumed_at),
    )
    assert_sound(accounts)
    # The gap is what the kill cost: from its death to the replacement's first ping.
    for a in accounts:
        assert 0 < a.excused <= resumed_at - killed_at + 2, a.as_dict()


async def test_prober_stopped_during_a_broker_outage_leaves_the_rest_to_its_next_start(
    stack: Stack,
) -> None:
    targets = await start_tracking(stack)
    await asyncio.to_thread(stack.rabbit.stop)
    await asyncio.sleep(3)
    stopped_at = time.time()  # it sends nothing from the SIGTERM on
    took = stack.stop("prober")  # exits 0 within CLEAN_EXIT_S, though nothing was published
    (stopped,) = [json.loads(x) for x in stack.prober_logs() if '"prober stopped"' in x]
    assert stopped["spool_results"] > 0, stopped
    assert stopped["unpublished_results"] == stopped["spool_results"], stopped
    stack.start("prober")
    await asyncio.to_thread(stack.rabbit.start)
    await pinged_since(stack, targets, time.time() + 2, timeout=60)
    stored = await stored_pings(stack)
    resumed_at = max(
        min(p["ts"].timestamp() for p in stored[t] if p["ts"].timestamp() > stopped_at)
        for t in targets
    )
    accounts = await settle_and_account(
        stack,
        targets,
        "SIGTERM prober during a broker outage, start it again",
        excused=(stopped_at - 2 * INTERVAL_S, resumed_at),
        sigterm_during_outage_s=round(took, 2),
        left_in_spool=stopped["spool_results"],
    )
    # Both lives logged their counts: every ping either sent is stored once, the
    # ones the first left in its spool included.
    assert_sound(accounts)
    assert took < FLUSH_TIMEOUT_S + 2.5, took


async def pinged_at_least(stack: Stack, since: float, count: int) -> int:
    """How many targets have `count` stored pings sent at or after `since` (one query)."""
    conn = await asyncpg.connect(stack.database_url)
    try:
        found: int = await conn.fetchval(
            "SELECT count(*) FROM (SELECT target_id FROM pings WHERE ts >= to_timestamp($1)"
            " GROUP BY target_id HAVING count(*) >= $2) t",
            since,
            count,
        )
    finally:
        await conn.close()
    return found


async def wait_all_pinged(
    stack: Stack, targets: int, since: float, count: int, timeout: float
) -> None:
    async def check() -> bool:
        return await pinged_at_least(stack, since, count) == targets

    await eventually(check, timeout=timeout, interval=0.5)


def spool_replays(stack: Stack) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for line in stack.prober_logs()
        if '"publishing what the spool holds first"' in line
    ]


@pytest.mark.timeout(SPOOL_OUTAGE_S + 200)
async def test_prober_killed_during_a_broker_outage_loses_nothing_it_spooled(stack: Stack) -> None:
    """300 targets at 1 s; the broker stops; half-way through the outage the prober
    is killed with -9 and started again; then the broker returns. Every slot but the
    ones the kill itself cost is stored exactly once."""
    stack.start("writer")
    stack.start("prober")
    api = stack.start("api")
    await asyncio.to_thread(wait_healthy, stack.api_url, api)
    targets: dict[int, str] = {}
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as client:
        for address in SPOOL_ADDRESSES:
            body = {"address": address, "interval_s": INTERVAL_S}
            response = await client.post("/targets", json=body, headers=AUTH)
            assert response.status_code == 201, response.text
            targets[response.json()["id"]] = address
    await wait_all_pinged(stack, len(targets), time.time(), 3, timeout=30)

    await asyncio.to_thread(stack.rabbit.stop)
    down_at = time.monotonic()
    await asyncio.sleep(SPOOL_OUTAGE_S / 2)
    stack.kill("prober")
    killed_at = time.time()
    stack.start("prober")  # the same id: it finds its own spool
    await asyncio.sleep(max(0.0, SPOOL_OUTAGE_S - (time.monotonic() - down_at)))
    assert await pinged_at_least(stack, killed_at, 1) == 0  # nothing stored meanwhile
    outage_s = time.monotonic() - down_at
    await asyncio.to_thread(stack.rabbit.start)
    back_at = time.time()
    await wait_all_pinged(stack, len(targets), back_at + 2, 1, timeout=60)

    (replay,) = spool_replays(stack)  # the restarted prober published its spool first
    assert replay["batches"] > 0 and replay["corrupt_tails"] == 0, replay
    conn = await asyncpg.connect(stack.database_url)
    try:
        resumed_at = await conn.fetchval(
            "SELECT max(first) FROM (SELECT extract(epoch FROM min(ts))::float8 AS first"
            " FROM pings WHERE ts > to_timestamp($1) GROUP BY target_id) t",
            killed_at,
        )
    finally:
        await conn.close()
    fault = f"broker down {SPOOL_OUTAGE_S:.0f} s, kill -9 prober mid-outage, restart"
    accounts = await settle_and_account(
        stack,
        targets,
        fault,
        counted_from=killed_at,
        excused=(killed_at - 2 * INTERVAL_S, resumed_at),
    )
    assert_sound(accounts)
    for a in accounts:
        assert 0 < a.excused <= resumed_at - killed_at + 2, a.as_dict()
    # Over the whole series: every slot from the first ping to the last is stored
    # once, but for the kill's own gap.
    stored = await stored_pings(stack)
    expected = sum(
        round((s[-1]["ts"] - s[0]["ts"]).total_seconds() / INTERVAL_S) + 1
        for s in (stored[t] for t in targets)
    ) - sum(a.excused for a in accounts)
    stored_all = sum(len(stored[t]) for t in targets)
    missing = sum(a.missing for a in accounts)
    duplicates = sum(a.duplicates for a in accounts)
    record(
        f"{fault}: whole series",
        accounts,
        {},
        outage_s=round(outage_s, 1),
        expected=expected,
        stored_all=stored_all,
        replayed_batches=replay["batches"],
        replayed_results=replay["results"],
    )
    assert (stored_all, missing, duplicates) == (expected, 0, 0)
