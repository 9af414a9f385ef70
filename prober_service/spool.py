"""The prober's on-disk spool: sealed batches outlive a broker outage and a kill -9.

Every sealed batch is appended to the active segment and fsynced before it
may be published; it leaves the spool only once the broker has confirmed it.
A segment file is removed when all its batches are confirmed, so a healthy
prober's spool holds a batch or two. On start the spool is read back in
order (segments by number, frames by offset) before anything new is added,
a truncated or corrupt tail is skipped and counted, and the segments of dead
probers of the same fleet are taken over (`spool_dir`).

A batch confirmed shortly before a kill may be published again from the
spool: it keeps its id, and the writer stores a batch id once.

The spool is bounded (`max_bytes`): when a new batch does not fit, the
oldest segments go, and their batches are counted as dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .spool_dir import (
    SpoolUnavailable,
    adopt_orphans,
    fsync_directory,
    lock_own,
    release,
    segment_name,
    segments_in,
)
from .spool_frames import CorruptFrame, Entry, FrameInfo, decode_frame, encode_frame, scan

log = logging.getLogger(__name__)

MiB = 1 << 20
# How long a starting prober waits for its own directory's lock (held only by
# a live prober with the same id, or for a moment by one taking it over).
LOCK_WAIT_S = 2.0


def oldest_to_drop(sizes: Sequence[int], incoming: int, cap: int) -> int:
    """How many of the oldest segments (`sizes`, oldest first) must go for `incoming`
    more bytes to fit in `cap`; all of them if even that is not enough."""
    total = sum(sizes) + incoming
    drop = 0
    while total > cap and drop < len(sizes):
        total -= sizes[drop]
        drop += 1
    return drop


def segment_bytes_for(cap: int) -> int:
    """Segments of about a sixteenth of the cap (1-64 MiB): dropping one frees little at a time."""
    return max(MiB, min(64 * MiB, cap // 16))


@dataclass(eq=False)
class Segment:
    seq: int
    path: Path
    size: int = 0  # bytes on disk
    frames: deque[FrameInfo] = field(default_factory=deque)  # not yet confirmed, oldest first


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _sync(fd: int, directory: Path | None) -> None:
    os.fsync(fd)
    if directory is not None:  # a new file: its directory entry must be durable too
        fsync_directory(directory)


def _read(segment: Segment, frame: FrameInfo) -> Entry:
    with segment.path.open("rb") as file:
        file.seek(frame.offset)
        entry = decode_frame(file.read(frame.size))
    if entry.batch_id != frame.batch_id:
        raise CorruptFrame("the frame changed since it was written")
    return entry


class Spool:
    """Segments of one prober's directory; the last one is open for appending."""

    def __init__(
        self,
        directory: Path,
        max_bytes: int,
        *,
        segment_bytes: int | None = None,
        lock_wait_s: float = LOCK_WAIT_S,
    ):
        self.directory = directory
        self.max_bytes = max_bytes
        self._lock_wait_s = lock_wait_s
        self._segment_bytes = segment_bytes or segment_bytes_for(max_bytes)
        self._segments: deque[Segment] = deque()
        self._active_fd: int | None = None  # open on self._segments[-1] when set
        self._writing = False  # an append is between its write and its fsync
        self._next_seq = 0
        self._lock_fd: int | None = None
        # The entry head() handed out (in flight), until confirm().
        self._head: tuple[Segment, FrameInfo, Entry] | None = None
        self.bytes = 0
        self.batches = 0  # not yet confirmed
        self.results = 0
        self.dropped_batches = 0
        self.dropped_results = 0
        self.corrupt = 0  # truncated or damaged tails skipped
        self.adopted = 0  # segments taken over from dead probers

    @property
    def is_open(self) -> bool:
        return self._lock_fd is not None

    def open(self) -> None:
        """Lock the directory, take over orphans, read back what is there (blocking I/O)."""
        self._lock_fd = lock_own(self.directory, self._lock_wait_s)
        try:
            own = segments_in(self.directory)
            _, self.adopted = adopt_orphans(self.directory, own[-1][0] + 1 if own else 0)
            for seq, path in segments_in(self.directory):
                self._load(seq, path)
                self._next_seq = seq + 1
        except OSError as exc:
            self.close()
            raise SpoolUnavailable(f"cannot read the spool {self.directory}: {exc}") from exc

    def _load(self, seq: int, path: Path) -> None:
        data = path.read_bytes()
        found = scan(data)
        if found.corrupt(len(data)):
            self.corrupt += 1
            log.warning(
                "corrupt spool tail skipped",
                extra={"path": str(path), "offset": found.end, "bytes": len(data) - found.end},
            )
            os.truncate(path, found.end)  # counted once, not at every start
        if not found.frames:
            path.unlink()
            return
        self._segments.append(Segment(seq, path, found.end, deque(found.frames)))
        self.bytes += found.end
        self.batches += len(found.frames)
        self.results += sum(f.results for f in found.frames)

    async def append(self, entry: Entry) -> None:
        """Write `entry` and fsync it; head() can hand it out from then on."""
        frame = encode_frame(entry)
        segment, new = self._make_room(len(frame))
        assert self._active_fd is not None
        fd, offset = self._active_fd, segment.size
        self._writing = True
        try:
            _write_all(fd, frame)
            segment.size += len(frame)
            self.bytes += len(frame)
            # A kill -9 loses nothing written; the fsync is for a power cut.
            await asyncio.to_thread(_sync, fd, self.directory if new else None)
        except OSError:
            self._roll_back(segment, offset)
            raise
        finally:
            self._writing = False
            if segment.size > offset:  # written (a cancelled fsync still completes)
                segment.frames.append(FrameInfo(offset, len(frame), entry.results, entry.batch_id))
                self.batches += 1
                self.results += entry.results

    def _make_room(self, incoming: int) -> tuple[Segment, bool]:
        """The segment to append to, after rotating and dropping as needed; True if new."""
        if self._active_fd is not None:
            active = self._segments[-1]
            if active.size and active.size + incoming > self._segment_bytes:
                self._close_active()
        drop = oldest_to_drop([s.size for s in self._segments], incoming, self.max_bytes)
        if drop:
            batches, results = self.dropped_batches, self.dropped_results
            for _ in range(drop):
                self._drop_oldest()
            log.warning(
                "spool full, oldest results dropped",
                extra={
                    "dropped_batches": self.dropped_batches - batches,
                    "dropped": self.dropped_results - results,
                    "dropped_total": self.dropped_results,
                    "max_bytes": self.max_bytes,
                },
            )
        if self._active_fd is not None:
            return self._segments[-1], False
        path = self.directory / segment_name(self._next_seq)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC
        self._active_fd = os.open(path, flags, 0o600)
        segment = Segment(self._next_seq, path)
        self._next_seq += 1
        self._segments.append(segment)
        return segment, True

    def _drop_oldest(self) -> None:
        segment = self._segments[0]
        in_flight = self._head[1] if self._head and self._head[0] is segment else None
        lost = [f for f in segment.frames if f is not in_flight]
        self.dropped_batches += len(lost)
        self.dropped_results += sum(f.results for f in lost)
        self._forget_frames(segment)
        if self._active_fd is not None and len(self._segments) == 1:
            self._release_fd()
        self._remove(segment)

    def _forget_frames(self, segment: Segment) -> None:
        self.batches -= len(segment.frames)
        self.results -= sum(f.results for f in segment.frames)
        segment.frames.clear()

    def _release_fd(self) -> None:
        assert self._active_fd is not None
        os.close(self._active_fd)
        self._active_fd = None

    def _close_active(self) -> None:
        """No more appends to the last segment; removed if nothing in it awaits a confirm."""
        self._release_fd()
        if not self._segments[-1].frames:
            self._remove(self._segments[-1])

    def _remove(self, segment: Segment) -> None:
        with contextlib.suppress(FileNotFoundError):
            segment.path.unlink()
        self._segments.remove(segment)
        self.bytes -= segment.size

    def _roll_back(self, segment: Segment, offset: int) -> None:
        """A failed write: cut the file back and start a new segment next time."""
        assert self._active_fd is not None
        with contextlib.suppress(OSError):
            os.ftruncate(self._active_fd, offset)
        self.bytes -= segment.size - offset
        segment.size = offset
        self._close_active()

    def head(self) -> Entry | None:
        """The oldest entry not yet confirmed, read back from its segment."""
        while self._segments and self._segments[0].frames:
            segment = self._segments[0]
            frame = segment.frames[0]
            if self._head is not None and self._head[1] is frame:
                return self._head[2]
            try:
                entry = _read(segment, frame)
            except (OSError, CorruptFrame) as exc:
                self._lose_rest(segment, exc)
                continue
            self._head = (segment, frame, entry)
            return entry
        return None

    def _lose_rest(self, segment: Segment, exc: Exception) -> None:
        """A frame that scanned intact cannot be read back: skip the rest of its segment."""
        self.corrupt += 1
        self.dropped_batches += len(segment.frames)
        self.dropped_results += sum(f.results for f in segment.frames)
        log.error(
            "unreadable spool segment skipped",
            extra={"path": str(segment.path), "error": repr(exc)},
        )
        self._forget_frames(segment)
        self._forget_if_done(segment)

    def confirm(self, entry: Entry) -> None:
        """The broker has `entry` (the one head() gave): forget it, and its segment once empty."""
        head, self._head = self._head, None
        if head is None or head[2] is not entry:
            return
        segment, frame, _ = head
        if segment.frames and segment.frames[0] is frame:  # not dropped meanwhile
            segment.frames.popleft()
            self.batches -= 1
            self.results -= frame.results
            self._forget_if_done(segment)

    def _forget_if_done(self, segment: Segment) -> None:
        if segment.frames or segment not in self._segments:
            return
        if self._active_fd is not None and segment is self._segments[-1]:
            if self._writing:
                return  # an append to it is under way
            self._close_active()  # removes it, being empty
        else:
            self._remove(segment)

    def close(self) -> None:
        """Release the directory (removed when empty); what is left waits for the next start."""
        if self._lock_fd is None:
            return
        if self._active_fd is not None:
            self._close_active()
        empty = self.batches == 0
        if empty:
            for segment in list(self._segments):
                self._remove(segment)
        release(self.directory, self._lock_fd, remove=empty)
        self._lock_fd = None
