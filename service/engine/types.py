"""The values that go in and out of the engine: events, their results, stream metadata and
exported state. Plain frozen dataclasses, no behaviour beyond checking an incoming event.

Timestamps are float64 seconds since the epoch; Δt is the float64 difference of two of them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from service.engine.errors import InvalidEvent
from service.store.recent import RecentEntry


@dataclass(slots=True)  # not frozen: built per event, frozen costs ~1 µs more each
class Event:
    """One validated event: ``x`` has ``input_size`` finite values in model feature order."""

    stream_id: str
    t: float  # seconds since the epoch (float64)
    x: tuple[float, ...]
    event_id: str | None = None
    received_at: float = field(default_factory=time.time)


@dataclass(slots=True)  # not frozen: built per event, frozen costs ~1 µs more each
class Prediction:
    stream_id: str
    t: float
    dt: float  # seconds applied
    y: tuple[float, ...]  # presented outputs (model.present)
    model: str
    version: str
    duplicate: bool
    reset: str | None  # a ResetReason value (service.store.reasons)
    event_id: str | None
    count: int  # events applied to the stream so far


@dataclass(slots=True)  # not frozen: built per event, frozen costs ~1 µs more each
class Rejection:
    """An event that was not applied; the stream's state is untouched by it."""

    stream_id: str
    code: str  # "out_of_order" (409) | "non_finite_state" (422)
    message: str
    last_t: float | None  # the stream's last applied event time (out of order)
    event_id: str | None


EventResult = Prediction | Rejection


@dataclass(frozen=True, slots=True)
class StreamInfo:
    stream_id: str
    model: str
    version: str
    last_t: float
    count: int
    created: float
    updated: float
    expires_at: float


@dataclass(frozen=True, slots=True)
class StateSnapshot:
    """A stream's state, for export and import. ``h`` and ``x_last`` are the float32 values as
    Python floats (exact). Import keeps the dedupe window only from ``recent`` (ids with their
    predictions); ``recent_ids`` alone cannot answer a duplicate and is informational."""

    h: tuple[float, ...]
    x_last: tuple[float, ...]
    last_t: float
    count: int
    version: str
    recent_ids: tuple[str, ...] = ()
    recent: tuple[RecentEntry, ...] = ()
    model: str | None = None
    created: float | None = None
    updated: float | None = None


def all_finite(values: Iterable[float]) -> bool:
    return all(math.isfinite(v) for v in values)


def check_event(ev: Event, model_name: str, input_size: int, max_abs_input: float) -> None:
    """Raise :class:`InvalidEvent` unless ``ev`` fits the model and every feature is at most
    ``max_abs_input`` in magnitude (the API checks this first, naming the field)."""
    if len(ev.x) != input_size:
        raise InvalidEvent(
            f"event has {len(ev.x)} features; model {model_name!r} takes {input_size}"
        )
    if not (math.isfinite(ev.t) and all_finite(ev.x)):
        raise InvalidEvent("event time and features must be finite numbers")
    if any(abs(v) > max_abs_input for v in ev.x):
        raise InvalidEvent(f"features must be at most {max_abs_input:g} in magnitude")
