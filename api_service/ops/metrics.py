"""What /metrics says, in the Prometheus text format (0.0.4), written by hand.

A few gauges and counters: dependencies, the results queue, the probers'
heartbeats (fleet.py) and the ladder's record of itself (ladder_health.py).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import asyncpg

from api_service.ops.dead_letters import reasons_check
from api_service.ops.fleet import ProberRow, fleet_rows
from api_service.ops.health import broker_check, database_check, ladder_check
from api_service.ops.ladder_health import LadderHealth
from shared.broker import BrokerLink
from shared.constants import Topology
from shared.dead_letters import ReasonCount
from shared.settings import Settings

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Labels = tuple[tuple[str, str], ...]


@dataclass
class Family:
    name: str
    kind: str  # gauge | counter
    help: str
    samples: list[tuple[Labels, float]] = field(default_factory=list)

    def add(self, value: float, **labels: str) -> None:
        self.samples.append((tuple(sorted(labels.items())), value))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


def render(families: Iterable[Family]) -> str:
    """The exposition text: HELP and TYPE once per family, one line per sample."""
    lines: list[str] = []
    for family in families:
        lines.append(f"# HELP {family.name} {family.help}")
        lines.append(f"# TYPE {family.name} {family.kind}")
        for labels, value in family.samples:
            label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
            suffix = f"{{{label_text}}}" if label_text else ""
            lines.append(f"{family.name}{suffix} {_number(value)}")
    return "\n".join(lines) + "\n"


# (stats key, metric name, kind, help) of what probers report in their heartbeat.
_PROBER_STATS = (
    ("targets", "pingtrack_prober_targets", "gauge", "Targets the prober pings."),
    ("shards", "pingtrack_prober_shards", "gauge", "Shards the prober owns."),
    ("send_rate", "pingtrack_prober_send_rate", "gauge", "Pings sent per second lately."),
    ("sent", "pingtrack_prober_pings_sent_total", "counter", "Echo requests sent."),
    ("replies", "pingtrack_prober_replies_total", "counter", "Echo replies matched."),
    ("lost", "pingtrack_prober_lost_total", "counter", "Pings without a reply in time."),
    ("late_sends", "pingtrack_prober_late_sends_total", "counter", "Sends over 10 ms late."),
    ("skipped_sends", "pingtrack_prober_skipped_sends_total", "counter", "Slots skipped."),
    ("send_errors", "pingtrack_prober_send_errors_total", "counter", "Sends the kernel refused."),
    ("pending", "pingtrack_prober_pending_pings", "gauge", "Pings awaiting a reply."),
    ("buffered_results", "pingtrack_prober_buffered_results", "gauge", "Results not yet sent."),
    (
        "dropped_results",
        "pingtrack_prober_dropped_results_total",
        "counter",
        "Results dropped by a full buffer or spool.",
    ),
    ("spool_bytes", "pingtrack_prober_spool_bytes", "gauge", "Bytes in the result spool."),
    ("spool_batches", "pingtrack_prober_spool_batches", "gauge", "Spooled batches unconfirmed."),
    (
        "spool_dropped_batches",
        "pingtrack_prober_spool_dropped_batches_total",
        "counter",
        "Batches dropped by a full spool.",
    ),
    (
        "spool_corrupt",
        "pingtrack_prober_spool_corrupt_total",
        "counter",
        "Torn or damaged spool tails skipped.",
    ),
)


def fleet_families(rows: Sequence[ProberRow]) -> list[Family]:
    live = [row for row in rows if row.live]
    count = Family("pingtrack_probers_live", "gauge", "Probers with a recent heartbeat.")
    count.add(len(live))
    age = Family(
        "pingtrack_prober_heartbeat_age_seconds", "gauge", "Time since the last heartbeat."
    )
    families = [count, age]
    for row in live:
        age.add(row.age_s, prober=row.id)
    for key, name, kind, text in _PROBER_STATS:
        family = Family(name, kind, text)
        for row in live:
            value = row.stats.get(key)
            if isinstance(value, int | float):
                family.add(value, prober=row.id)
        families.append(family)
    local = Family(
        "pingtrack_prober_local_failures_total",
        "counter",
        "Slots not sent for a reason of the prober's own (not losses), by reason.",
    )
    for row in live:
        for reason, value in sorted(row.stats.get("local_failures", {}).items()):
            local.add(value, prober=row.id, reason=reason)
    families.append(local)
    return families


def ladder_families(state: LadderHealth) -> list[Family]:
    lag = Family(
        "pingtrack_ladder_lag_seconds",
        "gauge",
        "How far behind now each tier's settled data is (raw_packed, level_N, hourly).",
    )
    for tier, behind in sorted(state.lag.items()):
        lag.add(behind.total_seconds(), tier=tier)
    rounds = Family("pingtrack_ladder_rounds_total", "counter", "Ladder rounds by outcome.")
    rounds.add(state.rounds, outcome="completed")
    rounds.add(state.failures, outcome="failed")
    age = Family(
        "pingtrack_ladder_last_round_age_seconds",
        "gauge",
        "Time since the last completed ladder round (since the ladder's record began if none).",
    )
    age.add((state.now - (state.finished_at or state.since)).total_seconds())
    failed = Family(
        "pingtrack_ladder_last_round_failed", "gauge", "1 when the latest ladder round failed."
    )
    failed.add(float(state.last_failed))
    discarded = Family(
        "pingtrack_ladder_discarded_marks_total",
        "counter",
        "Dirty hours dropped unsummarised because their raw pings had expired.",
    )
    discarded.add(state.discarded_marks)
    families = [lag, rounds, age, failed, discarded]
    if state.duration is not None:
        duration = Family(
            "pingtrack_ladder_last_round_duration_seconds",
            "gauge",
            "How long the last completed ladder round took.",
        )
        duration.add(state.duration.total_seconds())
        families.append(duration)
    return families


def dead_letter_families(depth: int | None, counts: dict[str, ReasonCount] | None) -> list[Family]:
    families = []
    if depth is not None:
        gauge = Family("pingtrack_dead_letter_queue_depth", "gauge", "Dead letters waiting.")
        gauge.add(depth)
        families.append(gauge)
    if counts is not None:
        messages = Family(
            "pingtrack_dead_letters_total", "counter", "Messages dead-lettered, by reason code."
        )
        pings = Family(
            "pingtrack_dead_letter_pings_total",
            "counter",
            "Pings in refused parts (invalid_values, too_late, …), by reason code.",
        )
        for code, count in counts.items():
            messages.add(count.messages, reason=code)
            pings.add(count.pings, reason=code)
        families += [messages, pings]
    return families


async def metrics_text(pool: asyncpg.Pool, broker: BrokerLink, settings: Settings) -> str:
    """Every family, rendered: what /metrics answers."""
    topology = Topology(settings.amqp_prefix)
    database, (broker_state, queue), (_, dead) = await asyncio.gather(
        database_check(pool),
        broker_check(broker, topology.results_queue),
        broker_check(broker, topology.dead_queue),
    )
    up = Family("pingtrack_dependency_up", "gauge", "1 when the dependency answers.")
    up.add(float(database == "ok"), dependency="database")
    up.add(float(broker_state == "ok"), dependency="broker")
    families = [up]
    if queue.depth is not None:
        depth = Family("pingtrack_results_queue_depth", "gauge", "Result batches waiting.")
        depth.add(queue.depth)
        families.append(depth)
    if queue.consumers is not None:
        consumers = Family(
            "pingtrack_results_queue_consumers", "gauge", "Writers consuming the results queue."
        )
        consumers.add(queue.consumers)
        families.append(consumers)
    counts = await reasons_check(pool) if database == "ok" else None
    families += dead_letter_families(dead.depth, counts)
    if database == "ok":
        families += fleet_families(await fleet_rows(pool, settings.amqp_prefix))
        ladder = await ladder_check(pool)
        if ladder is not None:
            families += ladder_families(ladder)
    return render(families)
