"""Live publishing: the background task that publishes each batch's new predictions (as
:func:`service.engine.encode.live_message` shapes them) in order after their states are
committed.

Only newly applied predictions are published (a duplicate or a rejection is not a new
prediction), and only on channels someone listens to: the task first asks the bus which of a
batch's channels have subscribers (one round trip on Redis) and encodes messages for those
only, so a batch nobody watches costs no encoding. That is exact, not a cache: the question is
asked after the states were committed, so a subscriber it misses subscribed after the
prediction was made, and the feed promises only what is made after subscribing. Publishing is
best effort: a full queue or a failing bus loses messages (counted in
``liquid_live_messages_dropped_total`` or logged), never state. Order across processes is not
guaranteed (each publishes after its own commit); each message carries the stream's ``count``
so that clients can order them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from service.engine.encode import live_message
from service.engine.types import Prediction
from service.live.bus import LiveBus
from service.metrics import Metrics

log = logging.getLogger(__name__)

PUBLISH_DRAIN_TIMEOUT_S = 5.0
PUBLISH_QUEUE_BATCHES = 1024  # batches of messages waiting to be published

# A prediction to publish: its channel, the prediction, the event's input, the output names.
LiveItem = tuple[str, Prediction, Sequence[float] | None, Sequence[str] | None]


class LivePublisher:
    """Publishes batches of :data:`LiveItem` on ``live`` from a background task, in the order
    they were queued. :meth:`start` and :meth:`stop` run on the event loop."""

    def __init__(self, live: LiveBus, metrics: Metrics) -> None:
        self._live = live
        self._metrics = metrics
        self._queue: asyncio.Queue[list[LiveItem] | None] | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._queue = asyncio.Queue(maxsize=PUBLISH_QUEUE_BATCHES)
        self._task = asyncio.get_running_loop().create_task(
            self._run(self._queue), name="liquid-engine-publisher"
        )

    def enqueue(self, messages: list[LiveItem]) -> None:
        """Queue ``messages`` for publishing; dropped (and counted) when the queue is full or
        the publisher is not started."""
        if self._queue is None:
            return
        try:
            self._queue.put_nowait(messages)
        except asyncio.QueueFull:
            self._metrics.live_dropped.inc(len(messages))

    async def _run(self, queue: asyncio.Queue[list[LiveItem] | None]) -> None:
        """Publishes batches of live messages in order; a failure loses messages, not state."""
        while True:
            items = await queue.get()
            if items is None:
                return
            t0 = time.perf_counter()
            try:
                listened = await self._live.listened([item[0] for item in items])
                messages = [
                    (channel, live_message(p, x, names))
                    for (channel, p, x, names), heard in zip(items, listened, strict=True)
                    if heard
                ]
                await self._live.publish_many(messages)
                self._metrics.stages["publish"].observe(time.perf_counter() - t0)
            except Exception:
                log.warning("publishing %d live messages failed", len(items), exc_info=True)

    async def stop(self) -> None:
        """Publish what is queued, waiting at most ``PUBLISH_DRAIN_TIMEOUT_S``: an unresponsive
        bus must not block shutdown."""
        if self._task is None or self._queue is None:
            return
        await self._queue.put(None)
        try:
            await asyncio.wait_for(self._task, PUBLISH_DRAIN_TIMEOUT_S)
        except asyncio.TimeoutError:
            log.warning("live messages still unpublished at shutdown were dropped")
