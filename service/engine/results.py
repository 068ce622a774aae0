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
from collections.abc import Sequence

from service.engine.semantics import (
    Duplicate,
    NonFinite,
    Outcome,
    OutOfOrder,
    Step,
)
from service.engine.types import Event, EventResult, Prediction, Rejection
from service.metrics import Metrics
from service.store.record import COUNTED_RESETS


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
            result = Prediction(
                stream_id=ev.stream_id,
                t=ev.t,
                dt=outcome.dt,
                y=outputs[len(steps)],  # the steps so far number this one
                model=model,
                version=version,
                duplicate=False,
                reset=outcome.reset,
                event_id=ev.event_id,
                count=outcome.count,
            )
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


def count_outcome(metrics: Metrics, outcome: Outcome) -> None:
    """Count ``outcome`` in ``liquid_events_total`` (and a step's Δt and reset)."""
    if isinstance(outcome, Step):
        metrics.event_dt.observe(outcome.dt)
        if outcome.reset in COUNTED_RESETS:
            metrics.events.labels(outcome="reset").inc()
            metrics.stream_resets.labels(reason=outcome.reset).inc()
        else:
            metrics.events.labels(outcome="applied").inc()
    elif isinstance(outcome, Duplicate):
        metrics.events.labels(outcome="duplicate").inc()
    elif isinstance(outcome, NonFinite):
        metrics.events.labels(outcome="rejected").inc()
    else:
        metrics.events.labels(outcome="out_of_order").inc()
