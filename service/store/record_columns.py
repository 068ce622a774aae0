"""Many stream records at once: a batch's records read into arrays and written from them.

The layout is :mod:`service.store.record`'s (format 2), and so are the bytes: a record written
here decodes with ``decode_record`` and equals what ``encode_record`` writes for the same
fields (tested). What is per record stays per record and in C (the CRC-32, joining a row's
bytes); headers, states and inputs move as ``[B, …]`` arrays. A record this reader does not
take whole (another model or version, other sizes, another format, anything corrupt) is marked
not ``ok`` and left to ``decode_record``, which names its fault.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from service.store.recent import RecentWindow
from service.store.record import FORMAT_VERSION, MAGIC, CodecError, read_window

HEADER = np.dtype(
    [
        ("magic", "S4"),
        ("format", "<u2"),
        ("flags", "<u2"),
        ("last_t", "<f8"),
        ("created", "<f8"),
        ("updated", "<f8"),
        ("count", "<u8"),
        ("n_h", "<u4"),
        ("n_x", "<u4"),
        ("n_recent", "<u2"),
        ("n_y", "<u2"),
        ("n_model", "<u2"),
        ("n_version", "<u2"),
    ]
)
_U32 = struct.Struct("<I")
_NO_WINDOW = _U32.pack(0)  # a window of no entries: its ids length, and nothing else
_ENTRY_BYTES = 8 + 8 + 8 + 1  # t, dt, count, reset code; then 8 per output


@dataclass(frozen=True, slots=True)
class RecordLayout:
    """The fixed part of the records of one served model: name, version and sizes."""

    model: str
    version: str
    n_h: int
    n_x: int

    @property
    def prefix(self) -> bytes:
        return self.model.encode("utf-8") + self.version.encode("utf-8")

    @property
    def fixed(self) -> int:
        """Bytes up to the end of the last input."""
        return HEADER.itemsize + len(self.prefix) + 4 * (self.n_h + self.n_x)


@dataclass(slots=True)
class RecordColumns:
    """Records read as arrays, one row per payload. Only rows where ``ok`` is true hold a
    record of the layout; the others must be read with ``decode_record``."""

    ok: np.ndarray  # bool[B]
    last_t: np.ndarray  # float64[B]
    created: np.ndarray  # float64[B]
    updated: np.ndarray  # float64[B]
    count: np.ndarray  # uint64[B]
    h: np.ndarray  # float32[B, n_h]
    windows: list[RecentWindow | None]  # None: no entries (or not ok)

    def rows(self, index: np.ndarray) -> RecordColumns:
        """The rows ``index`` (an array of row numbers)."""
        return RecordColumns(
            self.ok[index], self.last_t[index], self.created[index], self.updated[index],
            self.count[index], self.h[index], [self.windows[b] for b in index.tolist()],
        )  # fmt: skip


def _fields(rows: np.ndarray, start: int, stop: int) -> np.ndarray:
    return np.ascontiguousarray(rows[:, start:stop])


def read_columns(payloads: Sequence[bytes], layout: RecordLayout) -> RecordColumns:
    """The records ``payloads`` as arrays (see :class:`RecordColumns`)."""
    B = len(payloads)
    prefix = np.frombuffer(layout.prefix, dtype=np.uint8)
    fixed = layout.fixed
    lengths = np.fromiter(map(len, payloads), dtype=np.int64, count=B)
    ok = lengths >= fixed + _U32.size + 4
    if not ok.all():  # too short to hold the fixed part: zeros in its place, not ok
        filler = bytes(fixed + _U32.size + 4)
        payloads = [p if good else filler for p, good in zip(payloads, ok.tolist(), strict=True)]
    # The fixed part and the window's ids length of every row, one [B, fixed + 4] block.
    width = fixed + _U32.size
    rows = np.frombuffer(b"".join([p[:width] for p in payloads]), dtype=np.uint8)
    rows = rows.reshape(B, width)
    head = _fields(rows, 0, HEADER.itemsize).view(HEADER)[:, 0]
    ok &= head["magic"] == MAGIC
    ok &= head["format"] == FORMAT_VERSION
    ok &= (head["n_h"] == layout.n_h) & (head["n_x"] == layout.n_x)
    model_len = len(layout.model.encode("utf-8"))
    ok &= (head["n_model"] == model_len) & (head["n_version"] == len(prefix) - model_len)
    ok &= (rows[:, HEADER.itemsize : HEADER.itemsize + len(prefix)] == prefix).all(axis=1)
    n_ids = _fields(rows, fixed, width).view("<u4")[:, 0].astype(np.int64)
    n_recent = head["n_recent"].astype(np.int64)
    entry = _ENTRY_BYTES + 8 * head["n_y"].astype(np.int64)
    ok &= lengths == width + n_ids + n_recent * entry + 4
    stored_crc = np.frombuffer(b"".join([p[-4:] for p in payloads]), dtype="<u4")
    crc = np.fromiter((zlib.crc32(memoryview(p)[:-4]) for p in payloads), dtype=np.uint32, count=B)
    ok &= crc == stored_crc
    h_at = HEADER.itemsize + len(prefix)
    h = _fields(rows, h_at, h_at + 4 * layout.n_h).view("<f4")
    windows: list[RecentWindow | None] = [None] * B
    for b in np.flatnonzero(ok & (n_recent > 0)).tolist():
        try:
            windows[b] = read_window(
                payloads[b], fixed, len(payloads[b]) - 4, int(n_recent[b]), int(head["n_y"][b])
            )
        except CodecError:
            ok[b] = False
    return RecordColumns(
        ok, head["last_t"], head["created"], head["updated"], head["count"], h, windows
    )


def write_rows(
    layout: RecordLayout,
    last_t: np.ndarray,
    created: np.ndarray,
    updated: float,
    count: np.ndarray,
    h: np.ndarray,
    x: np.ndarray,
    windows: Sequence[RecentWindow | None],
) -> list[bytes]:
    """The record bytes of ``B`` streams of ``layout``: ``h[B, n_h]`` and ``x[B, n_x]`` raw
    float32, the other fields per row (``updated`` the same for all)."""
    B = len(last_t)
    prefix = layout.prefix
    head = np.zeros(B, dtype=HEADER)
    head["magic"] = MAGIC
    head["format"] = FORMAT_VERSION
    head["last_t"] = last_t
    head["created"] = created
    head["updated"] = updated
    head["count"] = count
    head["n_h"] = layout.n_h
    head["n_x"] = layout.n_x
    model_len = len(layout.model.encode("utf-8"))
    head["n_model"] = model_len
    head["n_version"] = len(prefix) - model_len
    if any(w is not None and w.n for w in windows):
        head["n_recent"] = [w.n if w is not None else 0 for w in windows]
        head["n_y"] = [w.n_y if w is not None and w.n else 0 for w in windows]
    fixed = np.empty((B, layout.fixed), dtype=np.uint8)
    fixed[:, : HEADER.itemsize] = head.view(np.uint8).reshape(B, HEADER.itemsize)
    at = HEADER.itemsize + len(prefix)
    fixed[:, HEADER.itemsize : at] = np.frombuffer(prefix, dtype=np.uint8)
    fixed[:, at : at + 4 * layout.n_h] = np.ascontiguousarray(h, dtype="<f4").view(np.uint8)
    fixed[:, at + 4 * layout.n_h :] = np.ascontiguousarray(x, dtype="<f4").view(np.uint8)
    out = []
    for row, w in zip(fixed, windows, strict=True):
        if w is None or not w.n:
            body = row.tobytes() + _NO_WINDOW
        else:
            body = b"".join((row.tobytes(), _U32.pack(len(w.ids)), *w.columns()))
        out.append(body + _U32.pack(zlib.crc32(body)))
    return out
