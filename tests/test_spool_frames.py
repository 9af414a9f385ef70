"""The spool's framing and cap policy: pure functions, checked on every shape hypothesis finds."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prober_service.spool import oldest_to_drop, segment_bytes_for
from prober_service.spool_dir import component, segment_name, segment_seq
from prober_service.spool_frames import (
    HEADER_SIZE,
    CorruptFrame,
    Entry,
    decode_frame,
    encode_frame,
    scan,
)

entries = st.builds(
    Entry,
    batch_id=st.binary(min_size=16, max_size=16),
    results=st.integers(0, 2**32 - 1),
    payload=st.binary(max_size=300),
)


def _segment(items: list[Entry]) -> bytes:
    return b"".join(encode_frame(e) for e in items)


@given(st.lists(entries, max_size=8))
def test_frames_read_back_as_written_in_order(items: list[Entry]) -> None:
    data = _segment(items)
    found = scan(data)
    assert found.end == len(data) and not found.corrupt(len(data))
    assert [decode_frame(data[f.offset : f.offset + f.size]) for f in found.frames] == items
    assert [(f.batch_id, f.results) for f in found.frames] == [
        (e.batch_id, e.results) for e in items
    ]


@given(st.lists(entries, min_size=1, max_size=6), st.data())
def test_a_cut_anywhere_keeps_exactly_the_whole_frames_before_it(
    items: list[Entry], data: st.DataObject
) -> None:
    whole = _segment(items)
    cut = data.draw(st.integers(0, len(whole) - 1), label="cut")
    found = scan(whole[:cut])
    ends = [sum(len(encode_frame(e)) for e in items[: i + 1]) for i in range(len(items))]
    kept = sum(1 for end in ends if end <= cut)
    assert len(found.frames) == kept
    assert found.end == (ends[kept - 1] if kept else 0)
    assert found.corrupt(cut) == (found.end != cut)


@given(st.lists(entries, min_size=1, max_size=4), st.data())
def test_a_flipped_bit_ends_the_scan_at_its_frame(items: list[Entry], data: st.DataObject) -> None:
    whole = bytearray(_segment(items))
    position = data.draw(st.integers(0, len(whole) - 1), label="byte")
    whole[position] ^= 1 << data.draw(st.integers(0, 7), label="bit")
    found = scan(bytes(whole))
    starts = [f.offset for f in scan(_segment(items)).frames]
    damaged = max(i for i, start in enumerate(starts) if start <= position)
    assert len(found.frames) == damaged
    assert found.corrupt(len(whole))


@given(entries)
def test_decode_refuses_anything_but_one_whole_frame(entry: Entry) -> None:
    frame = encode_frame(entry)
    assert decode_frame(frame) == entry
    with pytest.raises(CorruptFrame):
        decode_frame(frame[:-1] if entry.payload else frame[: HEADER_SIZE - 1])
    with pytest.raises(CorruptFrame):
        decode_frame(frame + b"\0")


def test_garbage_and_zeros_are_no_frames() -> None:
    assert scan(b"\0" * 4096).frames == []
    assert scan(b"PTS1" + b"\xff" * 60).end == 0


@pytest.mark.parametrize(
    ("sizes", "incoming", "cap", "drop"),
    [
        ([], 10, 100, 0),
        ([40, 40], 20, 100, 0),  # exactly full
        ([40, 40], 21, 100, 1),
        ([10, 10, 10, 60], 30, 100, 2),
        ([60, 30], 50, 100, 1),
        ([60, 30], 80, 100, 2),  # only the incoming one is left
        ([60, 30], 150, 100, 2),  # does not fit at all: everything goes
    ],
)
def test_cap_drops_the_fewest_oldest_segments(
    sizes: list[int], incoming: int, cap: int, drop: int
) -> None:
    assert oldest_to_drop(sizes, incoming, cap) == drop


@given(st.lists(st.integers(0, 1000), max_size=20), st.integers(0, 1000), st.integers(1, 5000))
def test_cap_policy_keeps_within_the_cap_and_drops_no_more_than_needed(
    sizes: list[int], incoming: int, cap: int
) -> None:
    drop = oldest_to_drop(sizes, incoming, cap)
    kept = sum(sizes[drop:]) + incoming
    assert kept <= cap or drop == len(sizes)
    if drop:
        assert sum(sizes[drop - 1 :]) + incoming > cap


def test_segments_are_a_sixteenth_of_the_cap_within_bounds() -> None:
    mib = 1 << 20
    assert segment_bytes_for(64 * mib) == 4 * mib
    assert segment_bytes_for(8 * mib) == mib
    assert segment_bytes_for(64 * 1024 * mib) == 64 * mib


@given(st.text(max_size=40))
def test_directory_names_are_single_safe_components_one_per_name(name: str) -> None:
    made = component(name)
    assert made and "/" not in made and made not in {".", ".."} and "\0" not in made
    assert component(name + "x") != made


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "host-12", "%2E", "é"])
def test_directory_names_of_awkward_ids_differ(name: str) -> None:
    others = {component(n) for n in ["", ".", "..", "a/b", "host-12", "%2E", "é"] if n != name}
    assert component(name) not in others


@given(st.integers(0, 10**16 - 1))
def test_segment_names_sort_like_their_numbers(seq: int) -> None:
    assert segment_seq(segment_name(seq)) == seq
    assert segment_name(seq) < segment_name(seq + 1) or seq + 1 == 10**16
    assert segment_seq("lock") is None and segment_seq("12.seg") is None
