"""A stream's stored state <-> bytes. Pure: no I/O, no clocks, never pickle.

Layout of format version 2 (all little-endian)::

    offset  size  field
    0       4     magic b"LQSR"
    4       2     u16 format version (2)
    6       2     u16 flags (0, reserved)
    8       8     f64 last_t       event time of the last applied event, seconds since the epoch
    16      8     f64 created      wall-clock time the stream (re)started
    24      8     f64 updated      wall-clock time of the last write
    32      8     u64 count        events applied since the stream (re)started
    40      4     u32 n_h          floats in the hidden state
    44      4     u32 n_x          floats in the last input
    48      2     u16 n_recent     entries in the dedupe window
    50      2     u16 n_y          outputs per stored prediction
    52      2     u16 len(model)   UTF-8 bytes of the model name
    54      2     u16 len(version) UTF-8 bytes of the model version hash
    56      ...   model name, model version
            4*n_h h: raw float32 (exactly the bytes the model produced)
            4*n_x x: raw float32 (the last input, held for predictions between events)
            4     u32 len(ids), then the dedupe window as columns (service.store.recent):
                  ids (UTF-8, each framed by 0xFF), f64 t[n_recent], f64 dt[n_recent],
                  u64 count[n_recent], u8 reset code[n_recent], f64 y[n_recent * n_y]
                  (the presented outputs that were returned)
    end-4   4     u32 CRC-32 of every byte before it

Version 1 stored the window entry by entry (u16 len(id), id, f64 t, f64 dt, u64 count, u8
reset code, n_y x f64 y); it is still read, and rewritten as version 2 at the stream's next
write. The columns make reading and rewriting a record a handful of slices however full its
window is (entry by entry, a window of 32 cost ~250 µs per event).

Stored predictions keep float64 so a duplicate returns exactly the floats first returned,
whatever the model's dtype. Anything that is not a complete, intact record of a known version
raises :class:`CodecError`.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from service.store.reasons import RESET_REASONS
from service.store.recent import RecentEntry, RecentWindow, WindowError

MAGIC = b"LQSR"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)

_HEADER = struct.Struct("<4sHHdddQIIHHHH")
_RECENT_V1 = struct.Struct("<ddQB")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_CRC = struct.Struct("<I")
_U16_MAX = 0xFFFF
_NO_WINDOW = RecentWindow.empty()


class CodecError(ValueError):
    """The bytes are not a readable stream record (unknown version, truncated or corrupt)."""


@dataclass(slots=True)  # not frozen: built per event, frozen costs ~1 µs more each
class StreamRecord:
    """Everything stored for one (tenant, model, stream).

    ``h`` and ``x`` are raw little-endian float32 bytes: the state is stored bit for bit as the
    model produced it, so serving adds no numerical drift.
    """

    model: str
    version: str
    h: bytes
    x: bytes
    last_t: float
    count: int
    created: float
    updated: float
    recent: RecentWindow = field(default_factory=RecentWindow.empty)

    @property
    def state_size(self) -> int:
        return len(self.h) // 4

    @property
    def input_size(self) -> int:
        return len(self.x) // 4

    def h_floats(self) -> tuple[float, ...]:
        return f32_to_floats(self.h)

    def x_floats(self) -> tuple[float, ...]:
        return f32_to_floats(self.x)


def floats_to_f32(values: Iterable[float] | np.ndarray) -> bytes:
    """Raw little-endian float32 bytes of ``values`` (rounded to float32 if they are wider)."""
    return np.asarray(values, dtype="<f4").tobytes()


def f32_to_floats(raw: bytes) -> tuple[float, ...]:
    """Python floats (exact) of raw little-endian float32 bytes."""
    if len(raw) % 4:
        raise CodecError(f"float32 data must be a multiple of 4 bytes; got {len(raw)}")
    return tuple(np.frombuffer(raw, dtype="<f4").tolist())


def _utf8(text: str, what: str) -> bytes:
    raw = text.encode("utf-8")
    if len(raw) > _U16_MAX:
        raise CodecError(f"{what} is {len(raw)} bytes of UTF-8; at most {_U16_MAX} can be stored")
    return raw


def encode_record(record: StreamRecord) -> bytes:
    """The bytes of ``record`` in the current format version."""
    if len(record.h) % 4 or len(record.x) % 4:
        raise CodecError("h and x must be raw float32 bytes (a multiple of 4 bytes)")
    if not 0 <= record.count < 2**64:
        raise CodecError(f"count must be in [0, 2**64); got {record.count}")
    recent = record.recent
    model = _utf8(record.model, "model name")
    version = _utf8(record.version, "model version")
    body = b"".join(
        (
            _HEADER.pack(
                MAGIC,
                FORMAT_VERSION,
                0,
                record.last_t,
                record.created,
                record.updated,
                record.count,
                len(record.h) // 4,
                len(record.x) // 4,
                recent.n,
                recent.n_y if recent.n else 0,
                len(model),
                len(version),
            ),
            model,
            version,
            record.h,
            record.x,
            _U32.pack(len(recent.ids)),
            *recent.columns(),
        )
    )
    return body + _CRC.pack(zlib.crc32(body))


def decode_record(data: bytes | bytearray | memoryview) -> StreamRecord:
    """The record stored in ``data``; :class:`CodecError` if it cannot be read."""
    raw = bytes(data)  # no copy when it is bytes already (what the stores hand over)
    size = len(raw)
    if size < 6:
        raise CodecError(f"stream record is truncated ({size} bytes)")
    if raw[:4] != MAGIC:
        raise CodecError("not a stream record (bad magic)")
    (version_no,) = _U16.unpack_from(raw, 4)
    if version_no not in READABLE_VERSIONS:
        raise CodecError(
            f"stream record format version {version_no} is not supported (this build reads "
            f"versions {READABLE_VERSIONS}); upgrade the service or delete the stream"
        )
    if size < _HEADER.size + _CRC.size:
        raise CodecError(f"stream record is truncated ({size} bytes)")
    end = size - _CRC.size
    if zlib.crc32(memoryview(raw)[:end]) != _CRC.unpack_from(raw, end)[0]:
        raise CodecError("stream record is corrupt (checksum mismatch)")
    (_, _, _, last_t, created, updated, count, n_h, n_x, n_recent, n_y, n_model, n_version) = (
        _HEADER.unpack_from(raw, 0)
    )
    # Everything by offsets: the hot path reads one record per stream per batch.
    end_model = _HEADER.size + n_model
    end_version = end_model + n_version
    end_h = end_version + 4 * n_h
    end_x = end_h + 4 * n_x
    if end_x > end:
        raise CodecError("stream record is truncated (reading the state)")
    try:
        model = raw[_HEADER.size : end_model].decode("utf-8")
        version = raw[end_model:end_version].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CodecError("stream record is corrupt: model name or version is not UTF-8") from exc
    if version_no == FORMAT_VERSION:
        recent = read_window(raw, end_x, end, n_recent, n_y)
    else:
        recent = _read_window_v1(raw, end_x, end, n_recent, n_y)
    return StreamRecord(
        model, version, raw[end_version:end_h], raw[end_h:end_x], last_t, count, created, updated,
        recent,
    )  # fmt: skip


def read_window(raw: bytes, pos: int, end: int, n: int, n_y: int) -> RecentWindow:
    """The format-2 dedupe window of ``n`` entries stored in ``raw[pos:end]`` (after the last
    input, up to the checksum)."""
    if pos + _U32.size > end:
        raise CodecError("stream record is truncated (reading recent ids length)")
    (n_ids,) = _U32.unpack_from(raw, pos)
    expected = pos + _U32.size + n_ids + n * (25 + 8 * n_y)
    if expected > end:
        raise CodecError("stream record is truncated (reading the dedupe window)")
    if expected < end:
        raise CodecError(f"stream record is corrupt: {end - expected} trailing bytes")
    if not n:  # the common case of events without ids: nothing to read
        return _NO_WINDOW if not n_ids else _corrupt_window("recent ids stored for no entries")
    ids_at = pos + _U32.size
    t_at = ids_at + n_ids
    dt_at, count_at, reset_at = t_at + 8 * n, t_at + 16 * n, t_at + 24 * n
    y_at = reset_at + n
    try:
        return RecentWindow.from_columns(
            n, n_y, raw[ids_at:t_at], raw[t_at:dt_at], raw[dt_at:count_at],
            raw[count_at:reset_at], raw[reset_at:y_at], raw[y_at:end],
        )  # fmt: skip
    except WindowError as exc:
        raise CodecError(f"stream record is corrupt: {exc}") from exc


def _corrupt_window(why: str) -> RecentWindow:
    raise CodecError(f"stream record is corrupt: {why}")


def _read_window_v1(raw: bytes, pos: int, end: int, n: int, n_y: int) -> RecentWindow:
    entries = []
    for _ in range(n):
        if pos + _U16.size > end:
            raise CodecError("stream record is truncated (reading an event id length)")
        (n_id,) = _U16.unpack_from(raw, pos)
        pos += _U16.size
        at_entry = pos + n_id
        if at_entry + _RECENT_V1.size + 8 * n_y > end:
            raise CodecError("stream record is truncated (reading a recent event)")
        try:
            event_id = raw[pos:at_entry].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CodecError("stream record is corrupt: event id is not UTF-8") from exc
        t, dt, entry_count, code = _RECENT_V1.unpack_from(raw, at_entry)
        if code >= len(RESET_REASONS):
            raise CodecError(f"stream record is corrupt: unknown reset code {code}")
        pos = at_entry + _RECENT_V1.size
        y = struct.unpack_from(f"<{n_y}d", raw, pos)
        pos += 8 * n_y
        entries.append(RecentEntry(event_id, t, dt, y, RESET_REASONS[code], entry_count))
    if pos != end:
        raise CodecError(f"stream record is corrupt: {end - pos} trailing bytes")
    return RecentWindow.of(entries)
