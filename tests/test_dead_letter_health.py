"""The dead-letter queue in /health and /metrics: its depth (degraded above the
threshold) and the writers' counts per reason code, against a real writer,
broker and database."""

from __future__ import annotations

import msgpack

from api_service.ops.dead_letters import degraded_reason
from shared.codec import encode_batch
from shared.settings import Settings
from tests.api_client import api_client
from tests.conftest import eventually
from tests.test_fleet_metrics import samples
from tests.test_writer import (
    NOW_US,
    broker_channel,
    fresh_target_id,
    make_batch,
    publish,
    reached,
    running_writer,
)


def test_degraded_only_above_the_threshold_and_not_before_the_queue_exists() -> None:
    assert degraded_reason(None, 0, "q") is None
    assert degraded_reason(5, 5, "q") is None
    assert degraded_reason(6, 5, "q") == (
        "dead letters: 6 in q (more than 5); `pingtrack dead-letters list` shows why"
    )


async def test_health_and_metrics_show_the_dead_letters_and_their_reasons(
    settings: Settings, own_database_url: str
) -> None:
    own = settings.model_copy(update={"database_url": own_database_url})
    data = msgpack.unpackb(encode_batch(make_batch(fresh_target_id(), NOW_US, 4)))
    data["rtt"][0] = -5
    bodies = [b"\xc1 garbage", msgpack.packb(data, use_bin_type=True)]
    async with broker_channel(own) as channel, running_writer(own) as writer:
        await publish(channel, own, *bodies)
        await eventually(reached(writer, "dead_lettered", 2))
        async with api_client(own.model_copy(update={"dead_letter_threshold": 1})) as client:

            async def counted() -> dict[str, object] | None:
                body = (await client.get("/health")).json()
                reasons = body["dead_letters"]["reasons"]
                return body if reasons and len(reasons) == 2 else None

            health = await eventually(counted)
            metrics = (await client.get("/metrics")).text
        async with api_client(own) as client:  # the default threshold, 100
            relaxed = (await client.get("/health")).json()
    assert isinstance(health, dict)
    queue = f"{own.amqp_prefix}.results.dead"
    assert (
        f"dead letters: 2 in {queue} (more than 1); `pingtrack dead-letters list` shows why"
        in (health["reasons"])
    )
    assert health["checks"]["dead_letter_queue_depth"] == 2
    dead = health["dead_letters"]
    assert (dead["depth"], dead["threshold"]) == (2, 1)
    assert {code: (r["messages"], r["pings"]) for code, r in dead["reasons"].items()} == {
        "invalid_values": (1, 1),
        "not_msgpack": (1, 0),
    }
    assert dead["reasons"]["invalid_values"]["last_reason"] == (
        "invalid_values: 1 of 4 pings refused: column 'rtt' has an invalid value -5 (1)"
    )
    assert not any(reason.startswith("dead letters") for reason in relaxed["reasons"])
    assert samples(metrics, "pingtrack_dead_letter_queue_depth") == {"": 2}
    assert samples(metrics, "pingtrack_dead_letters_total") == {
        '{reason="invalid_values"}': 1,
        '{reason="not_msgpack"}': 1,
    }
    assert samples(metrics, "pingtrack_dead_letter_pings_total") == {
        '{reason="invalid_values"}': 1,
        '{reason="not_msgpack"}': 0,
    }
