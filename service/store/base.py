"""The state store contract: versioned byte records with compare-and-set writes and a TTL.

A store only does I/O; what the bytes mean is :mod:`service.store.record`'s business. Every record
carries a version, a positive integer: a compare-and-set write names the version it read (0: the
key must not exist) and, when that is still the stored version, writes ``expected + 1`` with
the payload and (re)sets the TTL, atomically. So two writers that read the same version cannot
both win, and the loser reloads and recomputes: no update is lost.

After a key is deleted or expires its versions start again at 1. A writer that read version
``n`` of the old incarnation and stalled while the key was deleted and rewritten ``n`` times
would win against the new one; with versions only reused after an explicit delete or a full
TTL this is not a practical concern.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol, runtime_checkable


class Versioned(NamedTuple):
    """A stored record: its version (>= 1) and its payload bytes."""

    version: int
    payload: bytes


@dataclass(slots=True)  # not frozen: built per event, frozen costs ~1 µs more each
class CasWrite:
    """Write ``payload`` to ``key`` if its version is still ``expected_version`` (0: absent).

    ``ttl_s``: seconds until the key expires, counted from this write; ``None`` keeps it forever.
    """

    key: str
    expected_version: int
    payload: bytes
    ttl_s: float | None

    def __post_init__(self) -> None:
        if self.expected_version < 0:
            raise ValueError(f"expected_version must be >= 0; got {self.expected_version}")
        if self.ttl_s is not None and not self.ttl_s > 0:
            raise ValueError(f"ttl_s must be > 0 or None; got {self.ttl_s}")


def ttl_ms(ttl_s: float | None) -> int:
    """A TTL in whole milliseconds (rounded up, at least 1); 0 means none."""
    if ttl_s is None:
        return 0
    return max(1, math.ceil(ttl_s * 1000))


@runtime_checkable
class StateStore(Protocol):
    """Where stream states live. Implementations: ``MemoryStore``, ``RedisStore``."""

    async def load_many(self, keys: Sequence[str]) -> list[Versioned | None]:
        """The records of ``keys`` (``None`` where absent or expired), in one round trip (one
        command on Redis, whatever the number of keys)."""
        ...

    async def cas_many(self, writes: Sequence[CasWrite]) -> list[bool]:
        """Apply each compare-and-set write, in order; ``True`` where it won. One round trip
        (one command on Redis); each write wins or loses on its own, as if applied alone."""
        ...

    async def delete(self, key: str) -> bool:
        """Remove ``key``; ``True`` if it existed."""
        ...

    async def ping(self) -> bool:
        """``True`` when the store answers."""
        ...

    async def close(self) -> None:
        """Release connections. The store is not used afterwards."""
        ...
