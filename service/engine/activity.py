"""Which streams are active: those with an event in the last ``active_window_s`` seconds
(monotonic clock), kept in ``liquid_active_streams``. A background task prunes the set while no
events arrive."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import Iterable

from service.metrics import Metrics


class ActiveStreams:
    """Stream keys by when they last had an event, oldest first."""

    def __init__(self, window_s: float, metrics: Metrics) -> None:
        self._window_s = window_s
        self._metrics = metrics
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._task: asyncio.Task[None] | None = None

    def touch(self, keys: Iterable[str], now: float) -> None:
        """``keys`` had events at ``now`` (monotonic seconds)."""
        for key in keys:
            self._seen[key] = now
            self._seen.move_to_end(key)
        self._prune(now)

    def _prune(self, now: float) -> None:
        horizon = now - self._window_s
        while self._seen:
            key, seen = next(iter(self._seen.items()))
            if seen >= horizon:
                break
            del self._seen[key]
        self._metrics.active_streams.set(len(self._seen))

    def count(self) -> int:
        self._prune(time.monotonic())
        return len(self._seen)

    def start(self) -> None:
        """Start pruning in the background (on the running event loop)."""
        self._task = asyncio.get_running_loop().create_task(
            self._housekeep(), name="liquid-engine-housekeeper"
        )

    async def _housekeep(self) -> None:
        period = min(5.0, self._window_s / 10)
        while True:
            await asyncio.sleep(period)
            self._prune(time.monotonic())

    async def stop(self) -> None:
        """Stop pruning."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def clear(self) -> None:
        """Forget every stream (at shutdown)."""
        self._seen.clear()
        self._metrics.active_streams.set(0)
