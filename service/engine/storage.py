"""The state store as the engine uses it: every call timed in
``liquid_state_store_seconds{op}``, stored records decoded (an undecodable one is
:class:`StateUnreadable`, never overwritten)."""

from __future__ import annotations

import time

from service.codec import CodecError, StreamRecord, decode_record
from service.engine.errors import StateUnreadable
from service.metrics import Metrics
from service.store.base import CasWrite, StateStore, Versioned


def read_record(stored: Versioned) -> StreamRecord:
    """The record in ``stored``; :class:`StateUnreadable` if it cannot be decoded."""
    try:
        return decode_record(stored.payload)
    except CodecError as exc:
        raise StateUnreadable(f"stored state of stream is unreadable: {exc}") from exc


class TimedStore:
    """``store`` with each operation's duration observed in ``metrics``."""

    def __init__(self, store: StateStore, metrics: Metrics) -> None:
        self._store = store
        self._metrics = metrics

    def _observe(self, op: str, t0: float) -> None:
        self._metrics.state_store.labels(op=op).observe(time.perf_counter() - t0)

    async def load(self, keys: list[str]) -> list[Versioned | None]:
        """The stored values of ``keys`` (one round trip)."""
        t0 = time.perf_counter()
        try:
            return await self._store.load_many(keys)
        finally:
            self._observe("load", t0)

    async def save(self, writes: list[CasWrite]) -> list[bool]:
        """Compare-and-set every write (one round trip); ``True`` where it won."""
        if not writes:
            return []
        t0 = time.perf_counter()
        try:
            return await self._store.cas_many(writes)
        finally:
            self._observe("save", t0)

    async def delete(self, key: str) -> bool:
        t0 = time.perf_counter()
        try:
            return await self._store.delete(key)
        finally:
            self._observe("delete", t0)

    async def load_record(self, key: str) -> tuple[int, StreamRecord | None]:
        """The store version (0: absent) and decoded record of ``key``."""
        (stored,) = await self.load([key])
        if stored is None:
            return 0, None
        return stored.version, read_record(stored)
