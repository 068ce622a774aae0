"""The lane's part of a batch attempt (:mod:`service.engine.lane`): which streams take it,
their one model call, the records they commit and their answers.

The engine (``service.engine.core``) hands over the attempt's streams with what the store
loaded; :func:`take_lane` keeps, per model, the streams with one event whose record the lane
reads whole and returns the rest for the per-stream path. After the lane's model call, a stream
whose step is not finite goes back to the per-stream path too (it refuses the event there),
before any write: the lane commits only finite states.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from service.engine.batcher import Pending
from service.engine.compute import StepBlock
from service.engine.jobs import Job
from service.engine.lane import (
    DUPLICATE,
    HANDED_BACK,
    STEP,
    LanePlan,
    plan_lane,
    windows_after,
)
from service.engine.publish import LiveItem
from service.engine.registry import ModelRegistry
from service.engine.results import count_tally, results_of, step_prediction
from service.engine.semantics import Duplicate, OutOfOrder, Policy
from service.engine.types import Event
from service.metrics import Metrics
from service.store.base import CasWrite, Versioned
from service.store.keys import live_channel
from service.store.reasons import COUNTED_RESETS
from service.store.record_columns import RecordLayout, read_columns, write_rows

Groups = dict[str, list[Pending[Job]]]


@dataclass(eq=False, slots=True)
class LaneStreams:
    """One model's lane streams in an attempt, row ``b`` per stream."""

    model_name: str
    policy: Policy
    layout: RecordLayout
    keys: list[str]
    pending: list[Pending[Job]]
    events: list[Event]
    stored: list[Versioned | None]  # what the store loaded
    t: np.ndarray  # float64[B]
    ids: list[str | None]
    plan: LanePlan
    h0: np.ndarray  # float32[B, S], stored states (rows not resumed: unused)
    steps: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    y: list[list[float]] = field(default_factory=list)  # presented outputs per step row
    h: np.ndarray | None = None  # float32[n_steps, S]

    def x(self, rows: np.ndarray) -> np.ndarray:
        return np.array([self.events[b].x for b in rows.tolist()], dtype=np.float32)


def take_lane(
    groups: Groups,
    loaded: Sequence[Versioned | None],
    registry: ModelRegistry,
    now: float,
) -> tuple[list[LaneStreams], Groups, list[Versioned | None]]:
    """Split an attempt's streams: the lane's, per model, and the others with their loaded
    records (in the order given)."""
    candidates: dict[str, list[tuple[str, list[Pending[Job]], Versioned | None]]] = {}
    rest: Groups = {}
    rest_loaded: list[Versioned | None] = []
    for (key, pending), stored in zip(groups.items(), loaded, strict=True):
        if len(pending) == 1:
            candidates.setdefault(pending[0].item.model_name, []).append((key, pending, stored))
        else:
            rest[key] = pending
            rest_loaded.append(stored)
    lanes = []
    for model_name, streams in candidates.items():
        model = registry.model(model_name)
        policy = registry.policy(model_name)
        layout = RecordLayout(policy.model, policy.version, model.state_size, model.input_size)
        payloads = [b"" if s is None else s.payload for _, _, s in streams]
        records = read_columns(payloads, layout)
        exists = np.fromiter((s is not None for _, _, s in streams), dtype=bool, count=len(streams))
        takes = (~exists | records.ok).tolist()
        for (key, pending, stored), take in zip(streams, takes, strict=True):
            if not take:  # a record the lane does not read whole: the per-stream path names it
                rest[key] = pending
                rest_loaded.append(stored)
        rows = np.flatnonzero(takes)
        if not len(rows):
            continue
        kept = [streams[b] for b in rows.tolist()]
        pending = [p[0] for _, p, _ in kept]
        events = [p.item.event for p in pending]
        t = np.fromiter((ev.t for ev in events), dtype=np.float64, count=len(events))
        ids = [ev.event_id for ev in events]
        sub = records.rows(rows)
        plan = plan_lane(exists[rows], sub, t, ids, policy, now)
        keys = [k for k, _, _ in kept]
        loaded_kept = [s for _, _, s in kept]
        lane = LaneStreams(
            model_name, policy, layout, keys, pending, events, loaded_kept, t, ids, plan,
            sub.h,
        )  # fmt: skip
        lanes.append(lane)
    return lanes, rest, rest_loaded


def step_block(lane: LaneStreams) -> StepBlock | None:
    """The lane's steps as the model call's block (``None``: no step); sets ``lane.steps``."""
    plan = lane.plan
    steps = lane.steps = np.flatnonzero(plan.kind == STEP)
    if not len(steps):
        return None
    return StepBlock(
        x=lane.x(steps),
        dt=plan.dt[steps],
        fresh=plan.fresh[steps],
        resumed=plan.resumed[steps],
        h0=lane.h0[steps],
    )


def take_outputs(
    lane: LaneStreams, ys: np.ndarray, hs: np.ndarray
) -> dict[str, tuple[list[Pending[Job]], Versioned | None]]:
    """Keep the model call's outputs for the lane's steps (``ys[n, O]`` presented, ``hs[n,
    S]``, in ``lane.steps`` order); return the streams whose step was not finite, with what the
    store loaded for them, for the per-stream path, and drop them from the lane."""
    steps = lane.steps
    finite = np.isfinite(ys).all(axis=1) & np.isfinite(hs).all(axis=1)
    back: dict[str, tuple[list[Pending[Job]], Versioned | None]] = {}
    if not finite.all():
        for b in steps[~finite].tolist():
            back[lane.keys[b]] = ([lane.pending[b]], lane.stored[b])
        lane.plan.kind[steps[~finite]] = HANDED_BACK
        steps, ys, hs = steps[finite], ys[finite], hs[finite]
    lane.steps = steps
    lane.y = ys.tolist()
    lane.h = hs
    return back


def _version(stored: Versioned | None) -> int:
    """The store version a write compares against (0: the key was absent)."""
    return 0 if stored is None else stored.version


def lane_writes(lane: LaneStreams, ttl_s: float, now: float) -> list[CasWrite]:
    """The compare-and-set of every stream the lane stepped (in ``lane.steps`` order)."""
    steps = lane.steps
    if not len(steps):
        return []
    plan = lane.plan
    assert lane.h is not None
    windows = windows_after(plan, steps, lane.t, lane.ids, lane.y, lane.policy)
    payloads = write_rows(
        lane.layout, lane.t[steps], plan.created[steps], now, plan.count[steps], lane.h,
        lane.x(steps), windows,
    )  # fmt: skip
    return [
        CasWrite(lane.keys[b], _version(lane.stored[b]), payload, ttl_s)
        for b, payload in zip(steps.tolist(), payloads, strict=True)
    ]


def resolve_lane(
    lane: LaneStreams,
    committed: np.ndarray,
    registry: ModelRegistry,
    metrics: Metrics,
    messages: list[LiveItem] | None,
) -> None:
    """Answer the lane's streams: the steps ``committed[j]`` (of ``lane.steps``) and every
    duplicate and out-of-order event (they write nothing); count them; queue the steps' live
    messages on ``messages`` (``None``: no live publishing)."""
    plan = lane.plan
    name = lane.model_name
    version = registry.version(name)
    output_names = registry.model(name).output_names
    tally: Counter[str] = Counter()
    resets: Counter[str] = Counter()
    steps = lane.steps
    dt = plan.dt[steps].tolist()  # Python floats and ints in the answers
    count = plan.count[steps].tolist()
    dts = []
    for j, b in enumerate(steps.tolist()):
        if not committed[j]:
            continue
        ev = lane.events[b]
        reset = plan.reset[b]
        prediction = step_prediction(ev, dt[j], tuple(lane.y[j]), name, version, reset, count[j])
        if messages is not None:
            channel = live_channel(lane.pending[b].item.tenant, ev.stream_id)
            messages.append((channel, prediction, ev.x, output_names))
        lane.pending[b].item.settle(prediction)
        dts.append(dt[j])
        if reset in COUNTED_RESETS:
            tally["reset"] += 1
            resets[reset] += 1
        else:
            tally["applied"] += 1
    for b in np.flatnonzero(plan.kind > STEP).tolist():  # DUPLICATE, OUT_OF_ORDER
        ev = lane.events[b]
        if plan.kind[b] == DUPLICATE:
            outcome: Duplicate | OutOfOrder = Duplicate(0, original=plan.originals[b])
            tally["duplicate"] += 1
        else:
            outcome = OutOfOrder(0, float(plan.last_t[b]))
            tally["out_of_order"] += 1
        (result,) = results_of([outcome], [ev], [], name, version)
        lane.pending[b].item.settle(result)
    count_tally(metrics, tally, resets, np.asarray(dts, dtype=np.float64))
