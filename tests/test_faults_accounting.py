"""The fault tests' accounting, on series whose answer is known."""

from __future__ import annotations

import json
from collections import Counter

from tests.fault_accounting import Hole, account, holes_and_duplicates, prober_counts


def test_regular_series_has_no_hole_and_no_duplicate() -> None:
    assert holes_and_duplicates([10.0, 11.0, 12.01, 12.99], 1.0) == ([], [])


def test_gaps_are_counted_in_missing_slots_and_close_pings_as_duplicates() -> None:
    holes, duplicates = holes_and_duplicates([10.0, 11.0, 14.0, 14.2, 15.0], 1.0)
    assert holes == [Hole(11.0, 14.0, 2)]
    assert duplicates == [Hole(14.0, 14.2, 0)]


def _stopped(sent: dict[int, int], missed: dict[int, int]) -> str:
    entry = {
        "msg": "prober stopped",
        "sent_per_target": {str(k): v for k, v in sent.items()},
        "missed_per_target": {str(k): v for k, v in missed.items()},
        "dropped_results": 0,
        "unpublished_results": 0,
    }
    return json.dumps(entry)


def test_counts_of_every_prober_are_summed() -> None:
    lines = ['{"msg": "other"}', _stopped({1: 5, 2: 3}, {1: 1}), _stopped({1: 2}, {})]
    counts = prober_counts(lines)
    assert counts.sent == Counter({1: 7, 2: 3})
    assert counts.missed == Counter({1: 1})


def test_announced_and_excused_holes_keep_an_account_sound() -> None:
    counts = prober_counts([_stopped({1: 6}, {1: 1})])
    ts = [0.0, 1.0, 3.0, 4.0, 8.0, 9.0]  # one announced slot missing, then three excused
    sound = account(1, ts, 0, 1.0, counts, excused=(4.0, 8.0))
    assert (sound.sent, sound.stored, sound.missing, sound.announced, sound.excused) == (
        6,
        6,
        1,
        1,
        3,
    )
    assert sound.sound
    unexcused = account(1, ts, 0, 1.0, counts)
    assert unexcused.missing == 4 and not unexcused.sound


def test_results_left_in_a_spool_are_not_unpublished_the_rest_are() -> None:
    left = json.loads(_stopped({1: 5}, {}))
    left |= {"unpublished_results": 4, "spool_results": 3}
    assert prober_counts([json.dumps(left)]).unpublished == 1
    assert prober_counts([_stopped({1: 5}, {})]).unpublished == 0
