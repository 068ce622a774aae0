"""Batch formation: plain CPU code over a queue, testable without a model or a store.

Producers ``put`` items and get a future each; one consumer takes batches with
``next_batch`` (the items) or ``next_pending`` (items with their futures and enqueue times) and
resolves the futures itself. A batch is formed as soon as ``max_batch`` items wait, or
``max_delay_s`` after its first item was enqueued, whichever comes first. An item that already
waited that long while the previous batch was being processed does not wait again: under load
batches form immediately and grow, at low load an item waits at most ``max_delay_s``.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any, Generic, TypeVar

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)


class BatcherClosed(RuntimeError):  # noqa: N818 - reads as a state, like asyncio.QueueFull
    """``put`` after ``close``."""


@dataclass(eq=False, slots=True)
class Pending(Generic[T]):
    """A queued item, the future its producer waits on, and when it was enqueued (monotonic)."""

    item: T
    future: asyncio.Future[Any]
    enqueued_at: float = field(default_factory=time.monotonic)


class Batcher(Generic[T]):
    """An async queue that hands out batches of at most ``max_batch`` items.

    ``max_queue`` bounds the queue: ``put`` waits while it is full (backpressure). ``None``:
    unbounded.
    """

    def __init__(
        self,
        max_batch: int,
        max_delay_s: float,
        *,
        max_queue: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be greater than 0; got {max_batch}")
        if not max_delay_s >= 0:
            raise ValueError(f"max_delay_s must be >= 0 seconds; got {max_delay_s}")
        if max_queue is not None and max_queue < max_batch:
            raise ValueError(f"max_queue must be >= max_batch ({max_batch}); got {max_queue}")
        self.max_batch = max_batch
        self.max_delay_s = max_delay_s
        self.max_queue = max_queue
        self._clock = clock
        self._queue: deque[Pending[T]] = deque()
        self._grown = asyncio.Event()  # set when items arrive or the batcher closes
        self._shrunk = asyncio.Event()  # set when items leave (wakes producers under backpressure)
        self._closed = False

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def closed(self) -> bool:
        return self._closed

    async def put(self, item: T) -> asyncio.Future[Any]:
        """Enqueue ``item``; the returned future is resolved by the consumer."""
        return (await self.put_many((item,)))[0]

    async def put_many(self, items: Sequence[T]) -> list[asyncio.Future[Any]]:
        """Enqueue ``items`` together and in order (they are never interleaved with another
        producer's items, though a batch boundary may fall between them)."""
        if self.max_queue is not None:
            # A request larger than the whole queue is let in once the queue is empty.
            while (
                self._queue and not self._closed and len(self._queue) + len(items) > self.max_queue
            ):
                self._shrunk.clear()
                await self._shrunk.wait()
        if self._closed:
            raise BatcherClosed("the batcher is closed; no new items are accepted")
        loop = asyncio.get_running_loop()
        now = self._clock()
        pending = [Pending(item, loop.create_future(), now) for item in items]
        self._queue.extend(pending)
        if pending:
            self._grown.set()
        return [p.future for p in pending]

    async def next_pending(self) -> list[Pending[T]]:
        """The next batch with its futures. Waits for a first item; returns ``[]`` only when the
        batcher is closed and empty."""
        while not self._queue:
            if self._closed:
                return []
            self._grown.clear()
            await self._grown.wait()
        deadline = self._queue[0].enqueued_at + self.max_delay_s
        while len(self._queue) < self.max_batch and not self._closed:
            remaining = deadline - self._clock()
            if remaining <= 0:
                break
            self._grown.clear()
            try:
                await asyncio.wait_for(self._grown.wait(), remaining)
            except asyncio.TimeoutError:  # not the builtin before Python 3.11
                break
        n = min(self.max_batch, len(self._queue))
        batch = [self._queue.popleft() for _ in range(n)]
        self._shrunk.set()
        return batch

    async def next_batch(self) -> list[T]:
        """The next batch of items (see :meth:`next_pending`)."""
        return [p.item for p in await self.next_pending()]

    def close(self) -> None:
        """Accept no more items. Queued items are still handed out; then batches are empty."""
        self._closed = True
        self._grown.set()
        self._shrunk.set()


def group_by_stream(
    items: Iterable[T], key: Callable[[T], K] = attrgetter("stream_key")
) -> dict[K, list[T]]:
    """Items grouped by stream (``key(item)``, by default ``item.stream_key``): streams in order
    of first appearance, each stream's items in arrival order."""
    groups: dict[K, list[T]] = {}
    for item in items:
        groups.setdefault(key(item), []).append(item)
    return groups
