"""A stream's dedupe window as columns of bytes: what the record stores, read without parsing.

The window holds the last applied events of a stream that carried an id, each with the
prediction that was answered for it (DESIGN §4: a retried event gets its original answer). It
is read and rewritten on every event of the stream, so it is kept in the stored form: one bytes
column per field, the ids UTF-8 and framed by ``0xFF`` (a byte UTF-8 never contains). Finding
an id is one substring search; appending an event and dropping the oldest are a few slices;
nothing is decoded entry by entry unless an entry is asked for (a duplicate, an export).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache

from service.store.reasons import RESET_CODE, RESET_REASONS

SEP = b"\xff"
U16_MAX = 0xFFFF
_COUNT_LIMIT = 2**64
_VALID_CODES = bytes(range(len(RESET_REASONS)))
_CODE_BYTES = [bytes([code]) for code in range(len(RESET_REASONS))]
_F64 = struct.Struct("<d")
_U64 = struct.Struct("<Q")


@lru_cache(maxsize=64)
def _packer(fmt: str, m: int) -> struct.Struct:
    """``m`` little-endian values of ``fmt`` (``d``: float64, ``Q``: uint64)."""
    return struct.Struct(f"<{m}{fmt}")


class WindowError(ValueError):
    """Entries that cannot be stored in a window, or stored columns that do not form one."""


@dataclass(slots=True)  # not frozen: built per event, frozen costs ~1 µs more each
class RecentEntry:
    """An applied event of the dedupe window, with the prediction that was returned for it."""

    event_id: str
    t: float
    dt: float
    y: tuple[float, ...]
    reset: str | None  # a ResetReason value
    count: int


def _utf8_id(event_id: str) -> bytes:
    raw = event_id.encode("utf-8")
    if len(raw) > U16_MAX:
        raise WindowError(f"event id is {len(raw)} bytes of UTF-8; at most {U16_MAX} can be stored")
    return raw


class RecentWindow:
    """The dedupe window: ``n`` entries, oldest first, each with ``n_y`` outputs.

    Columns: ``ids`` (``0xFF id 0xFF id … 0xFF``, empty when ``n == 0``), ``t`` and ``dt``
    (float64), ``count`` (uint64), ``reset`` (one code per entry, an index of
    ``RESET_REASONS``), ``y`` (float64, ``n × n_y``); all little-endian. Immutable.
    """

    __slots__ = ("count", "dt", "ids", "n", "n_y", "reset", "t", "y")

    def __init__(
        self, n: int, n_y: int, ids: bytes, t: bytes, dt: bytes, count: bytes, reset: bytes,
        y: bytes,
    ) -> None:  # fmt: skip
        self.n = n
        self.n_y = n_y
        self.ids = ids
        self.t = t
        self.dt = dt
        self.count = count
        self.reset = reset
        self.y = y

    # --- building ------------------------------------------------------------------------------

    @classmethod
    def empty(cls, n_y: int = 0) -> RecentWindow:
        return cls(0, n_y, b"", b"", b"", b"", b"", b"")

    @classmethod
    def of(cls, entries: Iterable[RecentEntry]) -> RecentWindow:
        """A window of ``entries`` (oldest first); :class:`WindowError` if they cannot be
        stored (outputs of different sizes, an unknown reset, a count outside uint64)."""
        return cls.empty().extended(entries)

    def extended(self, entries: Iterable[RecentEntry]) -> RecentWindow:
        """This window with ``entries`` appended (newest last)."""
        new = list(entries)
        if not new:
            return self
        n_y = len(new[0].y) if self.n == 0 else self.n_y
        for e in new:
            if len(e.y) != n_y:
                raise WindowError(
                    "every stored prediction of a stream must have the same output size"
                )
            if e.reset not in RESET_CODE:
                raise WindowError(f"unknown reset reason {e.reset!r}; valid: {RESET_REASONS}")
            if not 0 <= e.count < _COUNT_LIMIT:
                raise WindowError(f"count must be in [0, 2**64); got {e.count}")
        n = self.n + len(new)
        if n > U16_MAX:
            raise WindowError(f"at most {U16_MAX} recent entries can be stored")
        if n_y > U16_MAX:
            raise WindowError(f"at most {U16_MAX} outputs per prediction can be stored")
        m = len(new)
        f64 = _packer("d", m).pack
        ids = SEP.join([_utf8_id(e.event_id) for e in new]) + SEP
        return RecentWindow(
            n,
            n_y,
            (self.ids or SEP) + ids,
            self.t + f64(*[e.t for e in new]),
            self.dt + f64(*[e.dt for e in new]),
            self.count + _packer("Q", m).pack(*[e.count for e in new]),
            self.reset + bytes([RESET_CODE[e.reset] for e in new]),
            self.y + _packer("d", m * n_y).pack(*[v for e in new for v in e.y]),
        )

    def pushed(self, entry: RecentEntry, keep: int) -> RecentWindow:
        """This window with ``entry`` appended and cut to the newest ``keep``: what
        ``extended((entry,)).last(keep)`` gives, in the few operations the hot path can afford
        (one per field)."""
        n_y = self.n_y if self.n else len(entry.y)
        code = RESET_CODE.get(entry.reset)
        if len(entry.y) != n_y or code is None or not 0 <= entry.count < _COUNT_LIMIT:
            return self.extended((entry,)).last(keep)  # it names what is wrong
        raw_id = _utf8_id(entry.event_id)
        if keep <= 0:
            return RecentWindow.empty(self.n_y)
        ids, t, dt, count, reset, y = (
            self.ids or SEP,
            self.t,
            self.dt,
            self.count,
            self.reset,
            self.y,
        )
        n = self.n + 1
        if n > keep:  # drop the oldest (the window never holds more than keep after a push)
            drop = n - keep
            cut = 0
            for _ in range(drop):
                cut = ids.index(SEP, cut + 1)
            ids, d8 = ids[cut:], 8 * drop
            t, dt, count, reset, y = t[d8:], dt[d8:], count[d8:], reset[drop:], y[d8 * n_y :]
            n = keep
        return RecentWindow(
            n,
            n_y,
            ids + raw_id + SEP,
            t + _F64.pack(entry.t),
            dt + _F64.pack(entry.dt),
            count + _U64.pack(entry.count),
            reset + _CODE_BYTES[code],
            y + _packer("d", n_y).pack(*entry.y),
        )

    def last(self, keep: int) -> RecentWindow:
        """The newest ``keep`` entries (all of them when there are fewer; none when
        ``keep <= 0``)."""
        drop = self.n - max(keep, 0)
        if drop <= 0:
            return self
        if drop >= self.n:
            return RecentWindow.empty(self.n_y)
        cut = 0
        for _ in range(drop):  # the separator before the first kept id
            cut = self.ids.index(SEP, cut + 1)
        d8 = 8 * drop
        return RecentWindow(
            self.n - drop,
            self.n_y,
            self.ids[cut:],
            self.t[d8:],
            self.dt[d8:],
            self.count[d8:],
            self.reset[drop:],
            self.y[d8 * self.n_y :],
        )

    # --- reading -------------------------------------------------------------------------------

    def find(self, event_id: str) -> int | None:
        """Index of the newest entry with ``event_id``, or ``None``: one substring search."""
        if not self.n:
            return None
        try:
            needle = SEP + event_id.encode("utf-8") + SEP
        except UnicodeEncodeError:  # never stored: ids are checked to be valid Unicode
            return None
        pos = self.ids.rfind(needle)
        return None if pos < 0 else self.ids.count(SEP, 0, pos)

    def event_ids(self) -> list[str]:
        return [] if not self.n else [raw.decode("utf-8") for raw in self.ids[1:-1].split(SEP)]

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> RecentEntry:
        i = index + self.n if index < 0 else index
        if not 0 <= i < self.n:
            raise IndexError(f"recent entry {index} of {self.n}")
        return self._entry(i, self.event_ids()[i])

    def __iter__(self) -> Iterator[RecentEntry]:
        for i, event_id in enumerate(self.event_ids()):
            yield self._entry(i, event_id)

    def _entry(self, i: int, event_id: str) -> RecentEntry:
        (t,) = _packer("d", 1).unpack_from(self.t, 8 * i)
        (dt,) = _packer("d", 1).unpack_from(self.dt, 8 * i)
        (count,) = _packer("Q", 1).unpack_from(self.count, 8 * i)
        y = _packer("d", self.n_y).unpack_from(self.y, 8 * i * self.n_y)
        return RecentEntry(event_id, t, dt, y, RESET_REASONS[self.reset[i]], count)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, RecentWindow):
            return self.columns() == other.columns() and (self.n_y == other.n_y or not self.n)
        if isinstance(other, Sequence):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # compared by value, like the tuple it replaced

    def __repr__(self) -> str:
        return f"RecentWindow({list(self)!r})"

    # --- the stored form -----------------------------------------------------------------------

    def columns(self) -> tuple[bytes, bytes, bytes, bytes, bytes, bytes]:
        return (self.ids, self.t, self.dt, self.count, self.reset, self.y)

    @classmethod
    def from_columns(
        cls, n: int, n_y: int, ids: bytes, t: bytes, dt: bytes, count: bytes, reset: bytes,
        y: bytes,
    ) -> RecentWindow:  # fmt: skip
        """A window from stored columns; :class:`WindowError` if they do not form one."""
        if len(t) != 8 * n or len(dt) != 8 * n or len(count) != 8 * n or len(reset) != n:
            raise WindowError("recent columns do not match the number of entries")
        if len(y) != 8 * n * n_y:
            raise WindowError("recent predictions do not match the number of entries")
        if n == 0:
            if ids:
                raise WindowError("recent ids stored for an empty window")
        elif not (ids[:1] == SEP and ids[-1:] == SEP and ids.count(SEP) == n + 1):
            raise WindowError("recent ids are not framed one per entry")
        try:  # every id valid UTF-8 (an ASCII byte in place of 0xFF keeps each id's validity)
            ids.replace(SEP, b"\n").decode("utf-8")
        except UnicodeDecodeError as exc:
            raise WindowError("a recent event id is not UTF-8") from exc
        if reset.translate(None, _VALID_CODES):
            raise WindowError(f"unknown reset code {max(reset)}")
        return cls(n, n_y, ids, t, dt, count, reset, y)
