"""Where a prober's spool lives, who holds it, and taking over the spools of dead probers.

    <spool_dir>/<fleet>/<prober id>/lock          flock(2)ed while the prober lives
    <spool_dir>/<fleet>/<prober id>/<seq>.seg     segments, replayed in seq order

A prober locks its own directory for its whole life, so two probers on one
host never share one. A directory of the same fleet whose lock is free
belongs to a prober that died (or got a new id: a restart without a fixed
`PINGTRACK_PROBER_ID` gets a new pid): its segments are moved into this
prober's directory, after its own, and replayed by it. A rename is atomic,
so each segment is in exactly one directory at any time.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from pathlib import Path
from urllib.parse import quote

from shared.errors import PingtrackError

log = logging.getLogger(__name__)

LOCK_NAME = "lock"
SEGMENT_SUFFIX = ".seg"


class SpoolUnavailable(PingtrackError):
    """The spool directory cannot be created, locked or read."""


def component(name: str) -> str:
    """A fleet or prober name as one safe path component (injective)."""
    quoted = quote(name, safe="")
    # quote() never writes a lone "%" nor "%2E" (it keeps dots): no name maps to these.
    return {"": "%", ".": "%2E", "..": "%2E%2E"}.get(quoted, quoted)


def prober_directory(root: Path, fleet: str, prober_id: str) -> Path:
    return root / component(fleet) / component(prober_id)


def segment_name(seq: int) -> str:
    return f"{seq:016d}{SEGMENT_SUFFIX}"


def segment_seq(name: str) -> int | None:
    stem = name.removesuffix(SEGMENT_SUFFIX)
    if stem == name or len(stem) != 16 or not stem.isdigit():
        return None
    return int(stem)


def segments_in(directory: Path) -> list[tuple[int, Path]]:
    """The segment files of a directory, oldest first."""
    found = ((segment_seq(p.name), p) for p in directory.iterdir())
    return sorted((seq, p) for seq, p in found if seq is not None)


def fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _try_lock(directory: Path) -> int | None:
    """The held lock of `directory` (an fd), or None if a live process holds it."""
    path = directory / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        # Whoever held it before may have removed the directory (a take-over):
        # the lock counts only if it is still the file at that path.
        if os.fstat(fd).st_ino != os.stat(path).st_ino:
            raise FileNotFoundError(path)
    except (BlockingIOError, FileNotFoundError):
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


def lock_own(directory: Path, wait_s: float) -> int:
    """Create and lock this prober's directory; wait a little for a take-over in progress."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = _try_lock(directory)
        except FileNotFoundError:
            fd = None  # the fleet's directory went away under us (its last prober left)
        except OSError as exc:
            raise SpoolUnavailable(
                f"cannot use the spool directory {directory}: {exc}"
                " (set PINGTRACK_SPOOL_DIR to a writable directory)"
            ) from exc
        if fd is not None:
            return fd
        if time.monotonic() > deadline:
            raise SpoolUnavailable(
                f"the spool directory {directory} is locked by a live process:"
                " another prober with this id runs on this host"
            )
        time.sleep(0.05)


def release(directory: Path, fd: int, *, remove: bool) -> None:
    """Give up the lock; with `remove`, first remove the (empty) directory."""
    try:
        if remove:
            with contextlib.suppress(OSError):
                (directory / LOCK_NAME).unlink()
                directory.rmdir()
                directory.parent.rmdir()  # the fleet's directory, when it was the last
    finally:
        os.close(fd)


def adopt_orphans(own: Path, next_seq: int) -> tuple[int, int]:
    """Move the segments of dead probers of this fleet into `own`, numbered from `next_seq`.

    Returns (directories taken over, segments moved).
    """
    directories = moved = 0
    for other in sorted(own.parent.iterdir()):
        if other == own or not other.is_dir():
            continue
        try:
            fd = _try_lock(other)
        except OSError as exc:
            log.warning(
                "cannot inspect a spool directory", extra={"path": str(other), "error": repr(exc)}
            )
            continue
        if fd is None:
            continue  # its prober is alive
        try:
            segments = segments_in(other)
            for _, path in segments:
                path.rename(own / segment_name(next_seq))
                next_seq += 1
            if segments:
                fsync_directory(own)
            log.info(
                "took over the spool of a stopped prober",
                extra={"path": str(other), "segments": len(segments)},
            )
        finally:
            release(other, fd, remove=True)
        directories += 1
        moved += len(segments)
    return directories, moved
