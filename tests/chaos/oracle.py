"""The oracle: replay every acknowledged event offline and judge what the service stored.

Per stream, the acknowledged events in the order they were sent are the truth (DESIGN §4: each
applied exactly once, in event-time order; the first with the model's default Δt). Each answer
carries ``count``, the number of events applied to the stream once it was applied, so for the
k-th acknowledged event the answer must say k:

- **lost**: an acknowledged event the stream forgot. A count that falls short of the previous
  answer's + 1 (a store that came back without the last writes), or a final count below the
  last answer's, counts the shortfall.
- **doubled**: an event applied twice. A count that jumps by more than 1, or a final count
  above the last answer's, counts the excess.
- **corrupt**: a stream with neither, whose answers or exported state disagree with the offline
  replay (``model.forward`` over the acknowledged events): a prediction, the final state ``h``
  or last prediction beyond :data:`TOLERANCE`, or the count, last time, last input or dedupe
  window (the ids of the last ``min(window, n)`` acknowledged events) not exactly equal.

Tolerance: the service steps many streams in one batched call and float32 sums depend on the
batch shape (docs/design.md, "Batch-dependent round-off": ~5e-7 per step). The demo model's
dynamics amplify that for a few steps before contracting it again: measured drift of a
prediction reaches 1e-5 to 1e-4 in a transient, final states stay within ~3e-7 (see the table's
"max drift"). :data:`TOLERANCE` (absolute, on class probabilities and state values) leaves a
margin of 10 over that; a wrong Δt, a state of another stream or a skipped step moves outputs by
far more. Lost and doubled events do not rely on it: the counts show them exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from liquidcore.model import LiquidModel
from tests.chaos.load import Ack, PlannedEvent

TOLERANCE = 1e-3


@dataclass
class Verdict:
    streams: int = 0
    acknowledged: int = 0
    lost: int = 0
    doubled: int = 0
    corrupt: int = 0  # streams
    max_drift: float = 0.0  # largest |service - replay| over the streams compared
    details: list[str] = field(default_factory=list)


def replay(model: LiquidModel, events: Sequence[PlannedEvent]) -> tuple[np.ndarray, np.ndarray]:
    """``(y[n,O] presented, h[S])`` after ``events`` from a fresh state, computed offline.
    Δt is the float64 difference of the timestamps rounded to float32 once, as the service."""
    t = np.array([e.t for e in events], dtype=np.float64)
    dt = np.empty_like(t)
    dt[0] = model.default_dt
    dt[1:] = np.diff(t)
    x = torch.tensor([[list(e.x) for e in events]], dtype=torch.float32)
    with torch.inference_mode():
        y, h = model.forward(x, torch.from_numpy(dt.astype(np.float32))[None])
        y = model.present(y)
    return y[0].numpy(), h[0].numpy()


def output_values(outputs: Any, names: Sequence[str] | None) -> list[float]:
    if isinstance(outputs, dict):
        return [float(outputs[n]) for n in names or outputs]
    return [float(v) for v in outputs]


def count_faults(acks: Sequence[Ack], final: int | None) -> tuple[int, int]:
    """``(lost, doubled)`` from the counts answered for the acknowledged events, in order, and
    the stream's count at the end (None: not known, the answers alone are judged)."""
    lost = doubled = 0
    previous = 0
    for a in acks:
        lost += max(0, previous + 1 - a.count)
        doubled += max(0, a.count - previous - 1)
        previous = a.count
    if final is not None:  # nothing was sent after the last answer
        lost += max(0, previous - final)
        doubled += max(0, final - previous)
    return lost, doubled


def compare(
    model: LiquidModel, acks: Sequence[Ack], state: Mapping[str, Any], window: int
) -> tuple[str | None, float]:
    """``(why the stream is corrupt or None, drift)``: the answers and the exported state of a
    stream without lost or doubled events against the offline replay."""
    events = [a.event for a in acks]
    y_ref, h_ref = replay(model, events)
    got = np.array([output_values(a.outputs, model.output_names) for a in acks])
    drift = float(max(np.abs(got - y_ref).max(), np.abs(np.asarray(state["h"]) - h_ref).max()))
    recent = state["recent"]
    ids = [e.id for e in events][-min(window, len(events)) :] if window else []
    last = events[-1]
    problems = []
    if drift > TOLERANCE:
        problems.append(f"drift {drift:.2e} > {TOLERANCE:.0e}")
    if state["last_t"] != last.t:
        problems.append(f"last_t {state['last_t']} != {last.t}")
    if state["x_last"] != np.asarray(last.x, dtype=np.float32).tolist():
        problems.append("x_last differs")
    if [e["id"] for e in recent] != ids:
        problems.append(f"window holds {len(recent)} ids, not the last {len(ids)} acknowledged")
    elif recent and np.abs(np.asarray(recent[-1]["y"]) - y_ref[-1]).max() > TOLERANCE:
        problems.append("last prediction differs")
    return "; ".join(problems) or None, drift


def judge(
    model: LiquidModel,
    acks: Mapping[str, Sequence[Ack]],
    states: Mapping[str, Mapping[str, Any] | None],
    *,
    window: int = 32,
    unresolved: Sequence[str] = (),
) -> Verdict:
    """Judge every stream that has acknowledged events. ``states``: each stream's exported
    state (``GET …/state``; None when the service has none). Streams in ``unresolved`` ended
    with a request never answered, so their final state is not compared (only their answers)."""
    verdict = Verdict()
    for stream, stream_acks in sorted(acks.items()):
        verdict.streams += 1
        verdict.acknowledged += len(stream_acks)
        state = states.get(stream)
        in_doubt = stream in unresolved
        final = None if in_doubt else (0 if state is None else int(state["count"]))
        lost, doubled = count_faults(stream_acks, final)
        verdict.lost += lost
        verdict.doubled += doubled
        if lost or doubled:
            verdict.details.append(f"{stream}: {lost} lost, {doubled} doubled")
            continue
        if in_doubt or state is None:
            continue
        why, drift = compare(model, stream_acks, state, window)
        verdict.max_drift = max(verdict.max_drift, drift)
        if why:
            verdict.corrupt += 1
            verdict.details.append(f"{stream}: corrupt ({why})")
    return verdict
