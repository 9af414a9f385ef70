"""The spool's file format: sealed result batches, framed with length and checksum.

A segment file is a run of frames, each one encoded batch exactly as it will
be published:

    magic "PTS1" | payload length u32 | results u32 | batch id 16 B | crc32 u32 | payload

(big-endian). The CRC covers the length, the result count, the batch id and
the payload, so a frame cut short by a kill mid-write, or damaged later, is
told apart from a good one; everything from the first bad frame on is skipped.
"""

from __future__ import annotations

import struct
import zlib
from typing import NamedTuple

from shared.constants import MAX_RESULTS_MESSAGE_BYTES
from shared.errors import PingtrackError

MAGIC = b"PTS1"
_FIELDS = struct.Struct(">II16s")  # payload length, results, batch id: covered by the CRC
_CRC = struct.Struct(">I")
HEADER_SIZE = len(MAGIC) + _FIELDS.size + _CRC.size  # 32


class CorruptFrame(PingtrackError):
    """Bytes that are not a whole, intact frame."""


class Entry(NamedTuple):
    """A sealed batch: its id, how many ping results it holds, and its message body."""

    batch_id: bytes
    results: int
    payload: bytes


class FrameInfo(NamedTuple):
    """Where a frame lies in its segment, and what it holds."""

    offset: int
    size: int  # header and payload
    results: int
    batch_id: bytes


class Scan(NamedTuple):
    """The intact frames of a segment, in order, and where they end."""

    frames: list[FrameInfo]
    end: int  # bytes from `end` on are a truncated or corrupt tail

    def corrupt(self, length: int) -> bool:
        return self.end < length


def encode_frame(entry: Entry) -> bytes:
    if len(entry.batch_id) != 16:
        raise ValueError("a batch id is 16 bytes")
    fields = _FIELDS.pack(len(entry.payload), entry.results, entry.batch_id)
    crc = zlib.crc32(entry.payload, zlib.crc32(fields))
    return b"".join((MAGIC, fields, _CRC.pack(crc), entry.payload))


def _check(data: bytes | memoryview, offset: int) -> FrameInfo:
    """The frame starting at `offset`, or CorruptFrame."""
    if len(data) - offset < HEADER_SIZE:
        raise CorruptFrame("truncated header")
    if bytes(data[offset : offset + len(MAGIC)]) != MAGIC:
        raise CorruptFrame("bad magic")
    fields = bytes(data[offset + len(MAGIC) : offset + len(MAGIC) + _FIELDS.size])
    length, results, batch_id = _FIELDS.unpack(fields)
    (crc,) = _CRC.unpack_from(data, offset + len(MAGIC) + _FIELDS.size)
    if length > MAX_RESULTS_MESSAGE_BYTES:
        raise CorruptFrame(f"implausible length {length}")
    start = offset + HEADER_SIZE
    if len(data) - start < length:
        raise CorruptFrame("truncated payload")
    if zlib.crc32(data[start : start + length], zlib.crc32(fields)) != crc:
        raise CorruptFrame("checksum mismatch")
    return FrameInfo(offset, HEADER_SIZE + length, results, batch_id)


def scan(data: bytes) -> Scan:
    """Every intact frame from the start of a segment up to the first bad byte."""
    view = memoryview(data)
    frames: list[FrameInfo] = []
    offset = 0
    while offset < len(data):
        try:
            frame = _check(view, offset)
        except CorruptFrame:
            break
        frames.append(frame)
        offset += frame.size
    return Scan(frames, offset)


def decode_frame(data: bytes) -> Entry:
    """The entry in `data`, which must be exactly one frame."""
    frame = _check(data, 0)
    if frame.size != len(data):
        raise CorruptFrame(f"{len(data) - frame.size} bytes beyond the frame")
    return Entry(frame.batch_id, frame.results, data[HEADER_SIZE:])
