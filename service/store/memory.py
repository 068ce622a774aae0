"""The embedded state store: a dict in this process, with the same versioning, CAS and TTL
semantics as Redis. The default when no Redis URL is configured (one process, one replica)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from service.store.base import CasWrite, Versioned


class MemoryStore:
    """In-process :class:`~service.store.base.StateStore`.

    Expired keys are dropped when read and by a sweep every so often (amortised O(1) per
    write), so memory does not grow with streams that went idle. ``clock`` (monotonic seconds)
    is injectable for tests.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        # key -> (version, payload, expires_at or None)
        self._data: dict[str, tuple[int, bytes, float | None]] = {}
        self._writes_since_sweep = 0

    def __len__(self) -> int:
        return len(self._data)

    def _get(self, key: str, now: float) -> tuple[int, bytes, float | None] | None:
        entry = self._data.get(key)
        if entry is not None and entry[2] is not None and entry[2] <= now:
            del self._data[key]
            return None
        return entry

    def _sweep(self, now: float) -> None:
        expired = [k for k, (_, _, exp) in self._data.items() if exp is not None and exp <= now]
        for key in expired:
            del self._data[key]
        self._writes_since_sweep = 0

    async def load_many(self, keys: Sequence[str]) -> list[Versioned | None]:
        now = self._clock()
        out: list[Versioned | None] = []
        for key in keys:
            entry = self._get(key, now)
            out.append(None if entry is None else Versioned(entry[0], entry[1]))
        return out

    async def cas_many(self, writes: Sequence[CasWrite]) -> list[bool]:
        now = self._clock()
        results = []
        for w in writes:
            entry = self._get(w.key, now)
            current = 0 if entry is None else entry[0]
            if current != w.expected_version:
                results.append(False)
                continue
            expires = None if w.ttl_s is None else now + w.ttl_s
            self._data[w.key] = (current + 1, bytes(w.payload), expires)
            results.append(True)
        self._writes_since_sweep += len(writes)
        if self._writes_since_sweep >= max(1024, len(self._data)):
            self._sweep(now)
        return results

    async def delete(self, key: str) -> bool:
        return self._get(key, self._clock()) is not None and self._data.pop(key, None) is not None

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        self._data.clear()
