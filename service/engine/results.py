"""What a committed stream's events are answered, and how each is counted: the planned
outcomes (``service.engine.semantics``) with the computed outputs become one
:class:`Prediction` or :class:`Rejection` per event.

An event whose step went non-finite is a 422 ``non_finite_state`` rejection.
A duplicate gets the original prediction (its time, Δt, outputs, reset and count) marked
``duplicate`` with its own event id: from the stored dedupe window, or from the step earlier in
the same batch that it repeats.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

from service.engine.semantics import (
    Duplicate,
    NonFinite,
    Outcome,
    OutOfOrder,
    Step,
)
from service.engine.timing import observe_many
from service.engine.types import Event, EventResult, Prediction, Rejection
from service.metrics import Metrics
from service.store.reasons import COUNTED_RESETS


def step_prediction(
    ev: Event,
    dt: float,
    y: tuple[float, ...],
    model: str,
    version: str,
    reset: str | None,
    count: int,
) -> Prediction:
    """The answer to an applied event (positional construction: it runs once per event)."""
    return Prediction(ev.stream_id, ev.t, dt, y, model, version, False, reset, ev.event_id, count)


def results_of(
    outcomes: Sequence[Outcome],
    events: Sequence[Event],
    outputs: Sequence[tuple[float, ...]],
    model: str,
    version: str,
) -> list[EventResult]:
    """One result per outcome, in order. ``events[o.index]`` is outcome ``o``'s event;
    ``outputs[j]`` the presented outputs of the ``j``-th step."""
    steps: dict[int, Prediction] = {}  # event index -> its step's prediction
    results: list[EventResult] = []
    for outcome in outcomes:
        ev = events[outcome.index]
        result: EventResult
        if isinstance(outcome, Step):
            y = outputs[len(steps)]  # the steps so far number this one
            reset, count = outcome.reset, outcome.count
            result = step_prediction(ev, outcome.dt, y, model, version, reset, count)
            steps[outcome.index] = result
        elif isinstance(outcome, Duplicate):
            if outcome.original is not None:
                o = outcome.original
                result = Prediction(
                    stream_id=ev.stream_id,
                    t=o.t,
                    dt=o.dt,
                    y=o.y,
                    model=model,
                    version=version,
                    duplicate=True,
                    reset=o.reset,
                    event_id=ev.event_id,
                    count=o.count,
                )
            else:
                assert outcome.of_index is not None
                first = steps[outcome.of_index]
                result = dataclasses.replace(first, duplicate=True, event_id=ev.event_id)
        elif isinstance(outcome, NonFinite):
            result = Rejection(
                stream_id=ev.stream_id,
                code="non_finite_state",
                message=(
                    "applying this event would leave the model's state or outputs non-finite "
                    "(NaN or infinite; an input far outside what the model was trained on?); it "
                    "was not applied and the stream keeps its state"
                ),
                last_t=None,
                event_id=ev.event_id,
            )
        else:
            assert isinstance(outcome, OutOfOrder)
            result = Rejection(
                stream_id=ev.stream_id,
                code="out_of_order",
                message=(
                    f"event time {ev.t!r} is before the stream's last applied event time "
                    f"{outcome.last_t!r}; events of a stream must be sent in time order"
                ),
                last_t=outcome.last_t,
                event_id=ev.event_id,
            )
        results.append(result)
    return results


def count_outcomes(metrics: Metrics, outcomes: Iterable[Outcome]) -> None:
    """Count ``outcomes`` in ``liquid_events_total`` (and the steps' Δt and resets): tallied
    first, then one increment per label and one bulk observation of the Δt values."""
    tally: Counter[str] = Counter()
    resets: Counter[str] = Counter()
    dts: list[float] = []
    for outcome in outcomes:
        if isinstance(outcome, Step):
            dts.append(outcome.dt)
            if outcome.reset in COUNTED_RESETS:
                tally["reset"] += 1
                resets[outcome.reset] += 1
            else:
                tally["applied"] += 1
        elif isinstance(outcome, Duplicate):
            tally["duplicate"] += 1
        elif isinstance(outcome, NonFinite):
            tally["rejected"] += 1
        else:
            tally["out_of_order"] += 1
    count_tally(metrics, tally, resets, np.asarray(dts, dtype=np.float64))


def count_tally(
    metrics: Metrics, tally: Counter[str], resets: Counter[str], dts: np.ndarray
) -> None:
    """Add counted outcomes (``tally`` by ``liquid_events_total`` label, ``resets`` by
    reason) and the applied steps' Δt values to the metrics."""
    for label, n in tally.items():
        metrics.events.labels(outcome=label).inc(n)
    for reason, n in resets.items():
        metrics.stream_resets.labels(reason=reason).inc(n)
    observe_many(metrics.event_dt, dts)
