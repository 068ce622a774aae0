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


class CodecError(ValueError):
    """The bytes are not a readable stream record (unknown version, truncated or corrupt)."""


@dataclass(frozen=True, slots=True)
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


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: memoryview, pos: int) -> None:
        self.data = data
        self.pos = pos

    def take(self, n: int, what: str) -> memoryview:
        end = self.pos + n
        if end > len(self.data):
            raise CodecError(f"stream record is truncated (reading {what})")
        view = self.data[self.pos : end]
        self.pos = end
        return view

    def text(self, n: int, what: str) -> str:
        try:
            return str(self.take(n, what), "utf-8")
        except UnicodeDecodeError as exc:
            raise CodecError(f"stream record is corrupt: {what} is not UTF-8") from exc


def decode_record(data: bytes | bytearray | memoryview) -> StreamRecord:
    """The record stored in ``data``; :class:`CodecError` if it cannot be read."""
    raw = memoryview(data).cast("B")
    if len(raw) < 6:
        raise CodecError(f"stream record is truncated ({len(raw)} bytes)")
    if bytes(raw[:4]) != MAGIC:
        raise CodecError("not a stream record (bad magic)")
    (version_no,) = _U16.unpack_from(raw, 4)
    if version_no not in READABLE_VERSIONS:
        raise CodecError(
            f"stream record format version {version_no} is not supported (this build reads "
            f"versions {READABLE_VERSIONS}); upgrade the service or delete the stream"
        )
    if len(raw) < _HEADER.size + _CRC.size:
        raise CodecError(f"stream record is truncated ({len(raw)} bytes)")
    body = raw[: len(raw) - _CRC.size]
    (crc,) = _CRC.unpack_from(raw, len(raw) - _CRC.size)
    if zlib.crc32(body) != crc:
        raise CodecError("stream record is corrupt (checksum mismatch)")
    (_, _, _, last_t, created, updated, count, n_h, n_x, n_recent, n_y, n_model, n_version) = (
        _HEADER.unpack_from(body, 0)
    )
    # The fixed part by offsets (the hot path reads one record per stream per batch).
    pos = _HEADER.size
    end_model = pos + n_model
    end_version = end_model + n_version
    end_h = end_version + 4 * n_h
    end_x = end_h + 4 * n_x
    if end_x > len(body):
        raise CodecError("stream record is truncated (reading the state)")
    try:
        model = str(body[pos:end_model], "utf-8")
        version = str(body[end_model:end_version], "utf-8")
    except UnicodeDecodeError as exc:
        raise CodecError("stream record is corrupt: model name or version is not UTF-8") from exc
    reader = _Reader(body, end_x)
    read = _read_window if version_no == FORMAT_VERSION else _read_window_v1
    recent = read(reader, n_recent, n_y)
    if reader.pos != len(body):
        raise CodecError(f"stream record is corrupt: {len(body) - reader.pos} trailing bytes")
    return StreamRecord(
        model=model,
        version=version,
        h=bytes(body[end_version:end_h]),
        x=bytes(body[end_h:end_x]),
        last_t=last_t,
        count=count,
        created=created,
        updated=updated,
        recent=recent,
    )


def _read_window(reader: _Reader, n: int, n_y: int) -> RecentWindow:
    (n_ids,) = _U32.unpack(reader.take(_U32.size, "recent ids length"))
    ids = bytes(reader.take(n_ids, "recent ids"))
    t, dt, count = (bytes(reader.take(8 * n, f"recent {what}")) for what in ("t", "dt", "count"))
    reset = bytes(reader.take(n, "recent resets"))
    y = bytes(reader.take(8 * n * n_y, "stored predictions"))
    try:
        return RecentWindow.from_columns(n, n_y, ids, t, dt, count, reset, y)
    except WindowError as exc:
        raise CodecError(f"stream record is corrupt: {exc}") from exc


def _read_window_v1(reader: _Reader, n: int, n_y: int) -> RecentWindow:
    entries = []
    for _ in range(n):
        (n_id,) = _U16.unpack(reader.take(_U16.size, "event id length"))
        event_id = reader.text(n_id, "event id")
        t, dt, entry_count, code = _RECENT_V1.unpack(reader.take(_RECENT_V1.size, "recent event"))
        if code >= len(RESET_REASONS):
            raise CodecError(f"stream record is corrupt: unknown reset code {code}")
        y = tuple(np.frombuffer(reader.take(8 * n_y, "stored prediction"), dtype="<f8").tolist())
        entries.append(RecentEntry(event_id, t, dt, y, RESET_REASONS[code], entry_count))
    return RecentWindow.of(entries)
