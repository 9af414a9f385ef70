"""Which reasons /health gives for which states (the states themselves are
produced for real in tests/test_faults.py)."""

from __future__ import annotations

from api_service.ops.health import FleetState, QueueState, degraded_reasons

HEALTHY_QUEUE = QueueState(depth=0, consumers=1)
HEALTHY_FLEET = FleetState(active_targets=3, live_probers=1, stale_total=0, stale=[])


def test_a_healthy_pipeline_has_no_reason() -> None:
    assert degraded_reasons("ok", "ok", HEALTHY_QUEUE, HEALTHY_FLEET) == []


def test_before_any_queue_or_membership_exists_nothing_is_blamed() -> None:
    fresh = FleetState(active_targets=0, live_probers=None, stale_total=0, stale=[])
    assert degraded_reasons("ok", "ok", QueueState(None, None), fresh) == []


def test_every_failing_part_is_named_in_order() -> None:
    fleet = FleetState(active_targets=3, live_probers=0, stale_total=2, stale=[])
    reasons = degraded_reasons("ok", "ok", QueueState(depth=40, consumers=0), fleet)
    assert reasons == [
        "writer: nobody consumes the results queue (40 waiting)",
        "probers: none alive for 3 active targets",
        "2 active targets stale (no stored ping for 3 intervals)",
    ]


def test_unreachable_services_are_reasons_and_an_unchecked_fleet_is_said() -> None:
    down = QueueState(None, None)
    assert degraded_reasons("error: OSError", "error: TimeoutError", down, None) == [
        "database unreachable (error: OSError)",
        "broker unreachable (error: TimeoutError)",
    ]
    assert degraded_reasons("ok", "ok", HEALTHY_QUEUE, None) == [
        "targets and probers could not be checked"
    ]
