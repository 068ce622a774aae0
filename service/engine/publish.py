"""Live publishing: the JSON a stream's live channel carries for each new prediction, and the
background task that publishes them in order after their states are committed.

Only newly applied predictions are published (a duplicate or a rejection is not a new
prediction). Publishing is best effort: a full queue or a failing bus loses messages (counted
in ``liquid_live_messages_dropped_total`` or logged), never state. Order across processes is
not guaranteed (each publishes after its own commit); each message carries the stream's
``count`` so that clients can order them.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from typing import Any

from service.engine.types import Prediction
from service.live.bus import LiveBus
from service.metrics import Metrics

log = logging.getLogger(__name__)

PUBLISH_DRAIN_TIMEOUT_S = 5.0
PUBLISH_QUEUE_BATCHES = 1024  # batches of messages waiting to be published


def prediction_message(
    pred: Prediction, x: Sequence[float] | None = None, output_names: Sequence[str] | None = None
) -> str:
    """The JSON published on a stream's live channel for ``pred``.

    Keys: ``stream_id, t, dt, outputs, model, version, duplicate, reset, event_id, count, x``;
    ``outputs`` is an object ``{name: value}`` when the model names its outputs, else a list.
    """
    outputs: Any = dict(zip(output_names, pred.y, strict=True)) if output_names else list(pred.y)
    return json.dumps(
        {
            "stream_id": pred.stream_id,
            "t": pred.t,
            "dt": pred.dt,
            "outputs": outputs,
            "model": pred.model,
            "version": pred.version,
            "duplicate": pred.duplicate,
            "reset": pred.reset,
            "event_id": pred.event_id,
            "count": pred.count,
            "x": list(x) if x is not None else None,
        },
        separators=(",", ":"),
    )


class LivePublisher:
    """Publishes batches of ``(channel, message)`` on ``live`` from a background task, in the
    order they were queued. :meth:`start` and :meth:`stop` run on the event loop."""

    def __init__(self, live: LiveBus, metrics: Metrics) -> None:
        self._live = live
        self._metrics = metrics
        self._queue: asyncio.Queue[list[tuple[str, str]] | None] | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._queue = asyncio.Queue(maxsize=PUBLISH_QUEUE_BATCHES)
        self._task = asyncio.get_running_loop().create_task(
            self._run(self._queue), name="liquid-engine-publisher"
        )

    def enqueue(self, messages: list[tuple[str, str]]) -> None:
        """Queue ``messages`` for publishing; dropped (and counted) when the queue is full or
        the publisher is not started."""
        if self._queue is None:
            return
        try:
            self._queue.put_nowait(messages)
        except asyncio.QueueFull:
            self._metrics.live_dropped.inc(len(messages))

    async def _run(self, queue: asyncio.Queue[list[tuple[str, str]] | None]) -> None:
        """Publishes batches of live messages in order; a failure loses messages, not state."""
        while True:
            messages = await queue.get()
            if messages is None:
                return
            try:
                await self._live.publish_many(messages)
            except Exception:
                log.warning("publishing %d live messages failed", len(messages), exc_info=True)

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
