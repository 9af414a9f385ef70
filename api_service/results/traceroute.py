"""On-demand traceroute of a target, stored in `traceroutes`.

icmplib's traceroute is blocking, so it runs in a worker thread; a few at a
time at most, since each holds a raw socket and can take seconds.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import icmplib

from api_service.times import iso_offset
from shared.errors import NotFound, PingtrackError

log = logging.getLogger(__name__)

MAX_HOPS = 30
HOP_TIMEOUT_S = 0.5
_CONCURRENT = asyncio.Semaphore(4)


class TracerouteFailed(PingtrackError):
    """The traceroute could not run (no ICMP permission, bad address)."""


@dataclass(frozen=True, slots=True)
class Hop:
    ttl: int
    address: str
    rtt_ms: float


@dataclass(frozen=True, slots=True)
class Trace:
    target_id: int
    address: str
    ts: datetime
    reached: bool
    hops: list[Hop]  # only the hops that answered, by TTL

    @property
    def hop_count(self) -> int | None:
        """Routers between us and the target, as a ping's hop count counts them."""
        if not self.reached or not self.hops:
            return None
        return self.hops[-1].ttl - 1

    def to_json(self) -> dict[str, Any]:
        return {
            "target_id": self.target_id,
            "address": self.address,
            "ts": iso_offset(self.ts),
            "reached": self.reached,
            "hop_count": self.hop_count,
            "hops": [{"ttl": h.ttl, "address": h.address, "rtt_ms": h.rtt_ms} for h in self.hops],
        }


def trace_path(address: str) -> tuple[bool, list[Hop]]:
    """Blocking: the answering hops to `address`, and whether it answered itself."""
    try:
        found = icmplib.traceroute(
            address, count=1, timeout=HOP_TIMEOUT_S, max_hops=MAX_HOPS, fast=True
        )
    except icmplib.SocketPermissionError:
        found = icmplib.traceroute(
            address,
            count=1,
            timeout=HOP_TIMEOUT_S,
            max_hops=MAX_HOPS,
            fast=True,
            privileged=False,
        )
    hops = [Hop(h.distance, h.address, round(h.avg_rtt, 3)) for h in found]
    return bool(hops) and hops[-1].address == address, hops


async def _address(pool: asyncpg.Pool, target_id: int) -> str:
    """The host to trace: the IP, or a hostname (icmplib resolves it); for http, none."""
    row = await pool.fetchrow(
        "SELECT coalesce(host(address), hostname) AS host FROM targets WHERE id = $1", target_id
    )
    if row is None:
        raise NotFound(f"target {target_id} does not exist")
    if row["host"] is None:
        raise TracerouteFailed(f"target {target_id} probes a URL; trace its host as a target")
    return str(row["host"])


async def trace_target(pool: asyncpg.Pool, target_id: int) -> Trace:
    """Trace the route to a target now, store it and return it."""
    address = await _address(pool, target_id)
    async with _CONCURRENT:
        try:
            reached, hops = await asyncio.to_thread(trace_path, address)
        except icmplib.ICMPLibError as exc:
            raise TracerouteFailed(f"traceroute to {address} failed: {exc}") from exc
    row = await pool.fetchrow(
        "INSERT INTO traceroutes (target_id, reached, hops) VALUES ($1, $2, $3::jsonb)"
        " RETURNING ts",
        target_id,
        reached,
        json.dumps([{"ttl": h.ttl, "address": h.address, "rtt_ms": h.rtt_ms} for h in hops]),
    )
    log.info("traceroute stored", extra={"target_id": target_id, "hops": len(hops)})
    return Trace(target_id, address, row["ts"], reached, hops)


async def latest_trace(pool: asyncpg.Pool, target_id: int) -> Trace:
    address = await _address(pool, target_id)
    row = await pool.fetchrow(
        "SELECT ts, reached, hops::text AS hops FROM traceroutes WHERE target_id = $1"
        " ORDER BY ts DESC LIMIT 1",
        target_id,
    )
    if row is None:
        raise NotFound(f"target {target_id} has no traceroute yet")
    hops = [Hop(h["ttl"], h["address"], h["rtt_ms"]) for h in json.loads(row["hops"])]
    return Trace(target_id, address, row["ts"], row["reached"], hops)
