"""What the engine queues: one :class:`Job` per event, and the :class:`Request` that
gathers the results of one ``submit`` call."""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

from service.engine.types import Event, EventResult


class Request:
    """One ``submit`` call's events: their results by position and the one future the caller
    waits on, set once every event is settled (one future per call, not one per event)."""

    __slots__ = ("errors", "future", "left", "results")

    def __init__(self, n: int, future: asyncio.Future[None]) -> None:
        self.results: list[EventResult | None] = [None] * n
        self.errors: list[BaseException | None] | None = None
        self.left = n
        self.future = future
        if n == 0:
            future.set_result(None)

    def settle(self, slot: int, result: EventResult | None, error: BaseException | None) -> None:
        if error is not None:
            if self.errors is None:
                self.errors = [None] * len(self.results)
            self.errors[slot] = error
        else:
            self.results[slot] = result
        self.left -= 1
        if self.left == 0 and not self.future.done():
            self.future.set_result(None)

    def __await__(self) -> Generator[Any, None, list[EventResult]]:
        yield from self.future.__await__()
        return self.outcome()

    def outcome(self) -> list[EventResult]:
        """The results in order; the first engine error of the call when any event failed."""
        if self.errors is not None:
            for err in self.errors:
                if err is not None:
                    raise err
        return self.results  # type: ignore[return-value]


@dataclass(eq=False, slots=True)
class Job:
    """One queued event, where its answer goes (``request``, position ``slot``)."""

    tenant: str
    model_name: str
    event: Event
    stream_key: str
    request: Request
    slot: int
    settled: bool = False

    def settle(self, result: EventResult | None, error: BaseException | None = None) -> None:
        if not self.settled:
            self.settled = True
            self.request.settle(self.slot, result, error)
