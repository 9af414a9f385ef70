"""The dead-letter queue in /health (metrics.py `dead_letter_families` for /metrics).

Its depth is read like the results queue's (health.py `broker_check`); the
reasons are the writers' counts per reason code (shared/dead_letters.py), which
keep growing after letters were replayed. /health is degraded while the queue
holds more than PINGTRACK_DEAD_LETTER_THRESHOLD messages.
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg

from shared.dead_letters import ReasonCount, read_reasons

log = logging.getLogger(__name__)
CHECK_TIMEOUT_S = 2.0


async def reasons_check(pool: asyncpg.Pool) -> dict[str, ReasonCount] | None:
    try:
        return await asyncio.wait_for(read_reasons(pool), CHECK_TIMEOUT_S)
    except Exception as exc:  # any failure is the answer, not an error of ours
        log.warning("health: dead-letter reasons check failed", extra={"error": repr(exc)})
        return None


def degraded_reason(depth: int | None, threshold: int, queue: str) -> str | None:
    if depth is None or depth <= threshold:
        return None
    return (
        f"dead letters: {depth} in {queue} (more than {threshold});"
        " `pingtrack dead-letters list` shows why"
    )


def details(
    depth: int | None, threshold: int, counts: dict[str, ReasonCount] | None
) -> dict[str, object]:
    return {
        "depth": depth,
        "threshold": threshold,
        "reasons": None
        if counts is None
        else {
            code: {
                "messages": count.messages,
                "pings": count.pings,
                "last_at": None if count.last_at is None else count.last_at.isoformat(),
                "last_reason": count.last_reason,
            }
            for code, count in counts.items()
        },
    }
