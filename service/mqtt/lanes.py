"""Per-stream lanes: a stream's messages are applied one pass at a time, in arrival order;
different streams run side by side.

A pass takes everything queued for its stream (so a busy stream's events reach the engine
together, in order, in one submission) and the next pass starts only when it has finished:
an event is never submitted before an earlier event of its stream has been answered, so
concurrency can never reorder a stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class StreamLanes(Generic[T]):
    def __init__(self, apply: Callable[[Hashable, list[T]], Awaitable[None]]) -> None:
        self._apply = apply
        self._queued: dict[Hashable, list[T]] = {}
        self._workers: dict[Hashable, asyncio.Task[None]] = {}
        self._idle = asyncio.Event()
        self._idle.set()

    def put(self, key: Hashable, item: T) -> None:
        self._queued.setdefault(key, []).append(item)
        if key not in self._workers:
            self._idle.clear()
            self._workers[key] = asyncio.get_running_loop().create_task(self._drain(key))

    async def _drain(self, key: Hashable) -> None:
        try:
            while items := self._queued.pop(key, None):
                try:
                    await self._apply(key, items)
                except Exception:  # a bug in one pass must not stop the stream's lane
                    log.exception("MQTT pass of %d message(s) failed", len(items))
        finally:
            del self._workers[key]
            if not self._workers:
                self._idle.set()

    async def wait_idle(self, timeout: float) -> bool:
        """True when every lane finished within ``timeout`` seconds."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout)
        return self._idle.is_set()

    async def close(self) -> None:
        """Cancel every pass still running (their messages stay unacknowledged)."""
        workers = list(self._workers.values())
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        self._queued.clear()

    def __len__(self) -> int:
        return len(self._workers)
