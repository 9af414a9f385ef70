"""The spool on a real file system: order, what leaves when, kills, torn tails, caps, take-overs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from prober_service.spool import Spool
from prober_service.spool_dir import LOCK_NAME, SpoolUnavailable, prober_directory
from prober_service.spool_frames import Entry

MiB = 1 << 20


def entry(n: int, size: int = 100) -> Entry:
    return Entry(uuid.UUID(int=n + 1).bytes, n % 7 + 1, bytes([n % 256]) * size)


def opened(directory: Path, **options: int) -> Spool:
    spool = Spool(directory, options.pop("max_bytes", 64 * MiB), lock_wait_s=0.2, **options)
    spool.open()
    return spool


def drain(spool: Spool) -> list[Entry]:
    """Everything the spool holds, oldest first, each confirmed after it is taken."""
    taken = []
    while (head := spool.head()) is not None:
        assert spool.head() is head  # handed out again until confirmed
        spool.confirm(head)
        taken.append(head)
    return taken


def segment_files(directory: Path) -> list[str]:
    """What a directory holds beside its lock."""
    return sorted(p.name for p in directory.iterdir() if p.name != LOCK_NAME)


async def test_entries_leave_in_order_and_only_once_confirmed(tmp_path: Path) -> None:
    spool = opened(tmp_path / "p")
    written = [entry(n) for n in range(5)]
    for e in written:
        await spool.append(e)
    assert (spool.batches, spool.results) == (5, sum(e.results for e in written))
    first = spool.head()
    assert first == written[0]
    assert spool.head() == written[0]  # not confirmed: still the head
    assert drain(spool) == written
    assert (spool.batches, spool.results, spool.bytes) == (0, 0, 0)
    assert segment_files(tmp_path / "p") == []  # a confirmed segment is removed
    spool.close()
    assert not (tmp_path / "p").exists()  # an empty spool leaves no directory


async def test_a_restart_replays_what_was_not_confirmed_in_order(tmp_path: Path) -> None:
    spool = opened(tmp_path / "p", segment_bytes=1000)  # 7 frames of 132 bytes a segment
    written = [entry(n) for n in range(30)]
    for e in written:
        await spool.append(e)
    for _ in range(8):
        spool.confirm(spool.head() or entry(-1))
    spool.close()
    again = opened(tmp_path / "p", segment_bytes=1000)
    # The first segment, all confirmed, is gone; the second goes out again whole
    # (the writer stores a batch id once), then the rest, in order.
    assert again.batches == 23
    assert drain(again) == written[7:]
    for e in written[:3]:  # new entries go after, into a new segment
        await again.append(e)
    assert drain(again) == written[:3]
    again.close()


KILLED_WRITER = """
import asyncio, sys, uuid
from pathlib import Path
from prober_service.spool import Spool
from prober_service.spool_frames import Entry

async def main():
    spool = Spool(Path(sys.argv[1]), 64 << 20)
    spool.open()
    for n in range(int(sys.argv[2])):
        await spool.append(Entry(uuid.UUID(int=n + 1).bytes, n % 7 + 1, bytes([n % 256]) * 100))
    print("written", flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""


def test_a_prober_killed_by_sigkill_leaves_every_appended_batch(tmp_path: Path) -> None:
    directory = tmp_path / "p"
    argv = [sys.executable, "-c", KILLED_WRITER, str(directory), "40"]
    with subprocess.Popen(argv, stdout=subprocess.PIPE) as child:
        assert child.stdout is not None
        assert child.stdout.readline() == b"written\n"
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    spool = opened(directory)  # its lock died with it
    assert drain(spool) == [entry(n) for n in range(40)]
    assert spool.corrupt == 0
    spool.close()


@pytest.mark.parametrize("cut", [1, 20, 31, 32, 80, 131])
async def test_a_torn_last_write_is_skipped_counted_and_cut_off(tmp_path: Path, cut: int) -> None:
    spool = opened(tmp_path / "p")
    for n in range(3):
        await spool.append(entry(n))
    spool.close()
    (segment,) = (tmp_path / "p").glob("*.seg")
    whole = segment.stat().st_size
    with segment.open("r+b") as file:  # the kill came `cut` bytes into the last frame
        file.truncate(whole - (132 - cut))
    again = opened(tmp_path / "p")
    assert again.corrupt == 1 and again.batches == 2
    assert drain(again) == [entry(0), entry(1)]
    again.close()
    assert not (tmp_path / "p").exists()  # cut off, so the next start counts nothing


async def test_garbage_after_good_frames_never_crashes_the_start(tmp_path: Path) -> None:
    spool = opened(tmp_path / "p")
    await spool.append(entry(0))
    spool.close()
    (segment,) = (tmp_path / "p").glob("*.seg")
    with segment.open("ab") as file:
        file.write(os.urandom(5000))
    (tmp_path / "p" / "0000000000000099.seg").write_bytes(b"\0" * 100)  # no frame at all
    again = opened(tmp_path / "p")
    assert (again.corrupt, again.batches) == (2, 1)
    assert drain(again) == [entry(0)]
    again.close()


async def test_a_full_spool_drops_its_oldest_batches_counted(tmp_path: Path) -> None:
    frame = 32 + 1000
    spool = opened(tmp_path / "p", max_bytes=10 * frame, segment_bytes=2 * frame)
    written = [entry(n, 1000) for n in range(25)]
    for e in written:
        await spool.append(e)
        assert spool.bytes <= spool.max_bytes
    kept = drain(spool)
    assert kept == written[-len(kept) :] and len(kept) >= 8
    assert spool.dropped_batches == 25 - len(kept)
    assert spool.dropped_results == sum(e.results for e in written[: 25 - len(kept)])
    spool.close()


async def test_the_batch_in_flight_is_not_counted_dropped(tmp_path: Path) -> None:
    frame = 32 + 1000
    spool = opened(tmp_path / "p", max_bytes=4 * frame, segment_bytes=2 * frame)
    written = [entry(n, 1000) for n in range(6)]
    for e in written[:4]:
        await spool.append(e)
    in_flight = spool.head()
    assert in_flight == written[0]
    for e in written[4:]:
        await spool.append(e)  # the first segment (batches 0, 1) goes
    assert spool.dropped_batches == 1  # batch 1 only: batch 0 is with the broker
    spool.confirm(in_flight)  # confirms nothing that is still there
    assert drain(spool) == written[2:]
    spool.close()


async def test_a_dead_probers_spool_is_taken_over_and_a_live_ones_is_not(tmp_path: Path) -> None:
    dead = opened(prober_directory(tmp_path, "fleet", "host-1"))
    live = opened(prober_directory(tmp_path, "fleet", "host-2"))
    other_fleet = opened(prober_directory(tmp_path, "other", "host-9"))
    mine = opened(prober_directory(tmp_path, "fleet", "host-3"))
    for n in range(3):
        await dead.append(entry(n))
        await live.append(entry(10 + n))
        await other_fleet.append(entry(20 + n))
        await mine.append(entry(30 + n))
    dead.close()  # unconfirmed: its directory stays
    other_fleet.close()
    mine.close()
    restarted = opened(prober_directory(tmp_path, "fleet", "host-3"))
    assert restarted.adopted == 1
    # Its own first, then the dead one's, each in order; nothing of the live or other fleet.
    assert drain(restarted) == [entry(n) for n in (30, 31, 32, 0, 1, 2)]
    assert not prober_directory(tmp_path, "fleet", "host-1").exists()
    assert drain(live) == [entry(n) for n in (10, 11, 12)]
    for spool in (restarted, live):
        spool.close()
    assert segment_files(tmp_path) == ["other"]


async def test_two_probers_with_one_id_on_one_host_cannot_share_a_spool(tmp_path: Path) -> None:
    first = opened(tmp_path / "p")
    with pytest.raises(SpoolUnavailable, match="another prober with this id"):
        opened(tmp_path / "p")
    first.close()
    opened(tmp_path / "p").close()


def test_an_unusable_directory_is_named_in_the_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(SpoolUnavailable, match="PINGTRACK_SPOOL_DIR"):
        opened(tmp_path / "file" / "spool")
