"""The state store as the engine uses it: every call timed in
``liquid_state_store_seconds{op}``, stored records decoded (an undecodable one is
:class:`StateUnreadable`, never overwritten), a store that refuses writes for want of memory
reported as :class:`StoreFull` (never as an internal error), and :func:`accepts_writes`, the
readiness probe of that condition."""

from __future__ import annotations

import time
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from service.engine.errors import EngineError, StateUnreadable
from service.metrics import Metrics
from service.store.base import CasWrite, StateStore, Versioned
from service.store.record import CodecError, StreamRecord, decode_record


def read_record(stored: Versioned) -> StreamRecord:
    """The record in ``stored``; :class:`StateUnreadable` if it cannot be decoded."""
    try:
        return decode_record(stored.payload)
    except CodecError as exc:
        raise StateUnreadable(f"stored state of stream is unreadable: {exc}") from exc


# Written (with a 1 s TTL) by the readiness probe; the hash tag keeps it on one cluster slot.
WRITE_PROBE_KEY = "liquid:probe:{readyz}"


class StoreFull(EngineError, RuntimeError):  # noqa: N818
    """The state store refuses writes: it is out of memory (Redis at ``maxmemory`` with the
    ``noeviction`` policy). Nothing was written (503 ``store_full``)."""


# The store is unreachable or slow: expected in operation (answered 503, logged without a trace).
STORE_DOWN: tuple[type[Exception], ...] = (RedisConnectionError, RedisTimeoutError)
# Failures of a batch that are the store's condition, not a bug.
STORE_FAILURES: tuple[type[Exception], ...] = (StoreFull, *STORE_DOWN)


async def accepts_writes(store: Any) -> bool:
    """Whether ``store`` takes a write now: ``False`` when a Redis store answers but refuses
    writes (out of memory, a read-only replica). A store without a Redis client (the in-process
    one) always does. Connection errors propagate (the caller's ping reports those)."""
    client = getattr(store, "client", None)
    if client is None:
        return True
    try:
        await client.set(WRITE_PROBE_KEY, b"1", px=1000)
    except (RedisConnectionError, RedisTimeoutError):
        raise
    except RedisError:  # OOM, READONLY: the server answers and says no
        return False
    return True


_STAGES = {"load": "store_load", "save": "store_write"}  # liquid_stage_seconds of a batch


class TimedStore:
    """``store`` with each operation's duration observed in ``metrics``."""

    def __init__(self, store: StateStore, metrics: Metrics) -> None:
        self._store = store
        self._metrics = metrics

    def _observe(self, op: str, t0: float) -> None:
        spent = time.perf_counter() - t0
        self._metrics.state_store.labels(op=op).observe(spent)
        stage = _STAGES.get(op)
        if stage is not None:
            self._metrics.stages[stage].observe(spent)

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
        except OutOfMemoryError as exc:
            raise StoreFull(
                "the state store is out of memory and refuses writes; nothing was applied"
            ) from exc
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
