"""The batch's common case as arrays: streams with one event each, decided and recorded
without a Python object per stream.

A stream takes this lane when it has exactly one event in a batch attempt and its stored record
is absent or a current-format record of the served model version with the model's sizes (read
by :func:`service.store.record_columns.read_columns`). Everything else takes the per-stream
path, whose :func:`service.engine.semantics.plan_stream` is the reference: for one event the
lane decides the same (the tests run both on the same streams and compare every answer and
stored byte). Decisions, for event ``t`` (with id ``id``) on a stream:

- no record, or one idle longer than the TTL: a step from ``init_state`` with Δt
  ``first_dt`` and reset ``first_event`` / ``expired``; the stream restarts (count 1);
- ``id`` in the stored dedupe window: a duplicate, answered the stored prediction;
- ``t`` before the stored ``last_t``: out of order;
- ``t - last_t > max_gap_s``: a step from ``init_state`` with Δt ``first_dt``, reset ``gap``;
- otherwise a step of Δt ``t - last_t`` (float64) from the stored state.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from service.engine.semantics import Policy
from service.store.reasons import ResetReason
from service.store.recent import RecentEntry, RecentWindow
from service.store.record_columns import RecordColumns

STEP, DUPLICATE, OUT_OF_ORDER = 0, 1, 2  # the kinds that answer without a step are > STEP
HANDED_BACK = -1  # a step that was not finite: the per-stream path answers it
_NO_WINDOW = RecentWindow.empty()


@dataclass(slots=True)
class LanePlan:
    """What happens to each stream's event (``kind[b]``: STEP, DUPLICATE or OUT_OF_ORDER) and,
    for steps, how: ``dt`` (float64 s), ``fresh`` (from ``init_state``), ``resumed`` (from
    the stored state), ``reset`` (a ResetReason value or None), ``count`` and ``created`` of
    the record after it; ``base``: the stored dedupe window that carries over;
    ``originals``: the stored entry each duplicate repeats."""

    kind: np.ndarray
    dt: np.ndarray
    fresh: np.ndarray
    resumed: np.ndarray
    reset: list[str | None]
    count: np.ndarray
    created: np.ndarray
    last_t: np.ndarray
    base: list[RecentWindow]
    originals: dict[int, RecentEntry]


def plan_lane(
    exists: np.ndarray,
    records: RecordColumns,
    t: np.ndarray,
    ids: list[str | None],
    policy: Policy,
    now: float,
) -> LanePlan:
    """Decide one event per stream. ``exists[b]``: stream ``b`` has a stored record, read
    into row ``b`` of ``records`` (rows without one are ignored); ``t[b]``, ``ids[b]``: its
    event."""
    expired = exists & (now - records.updated > policy.ttl_s)
    resumed = exists & ~expired
    window = max(0, policy.dedupe_window)
    base = [_NO_WINDOW] * len(t)
    originals: dict[int, RecentEntry] = {}
    duplicate = np.zeros(len(t), dtype=bool)
    for b in np.flatnonzero(resumed).tolist():
        stored = records.windows[b]
        if stored is None:
            continue
        kept = base[b] = stored.last(window)
        event_id = ids[b]
        if event_id is not None and window:
            found = kept.find(event_id)
            if found is not None:
                originals[b] = kept[found]
                duplicate[b] = True
    last_t = records.last_t
    late = resumed & ~duplicate & (t < last_t)
    step = ~duplicate & ~late
    gap = resumed & step & (t - last_t > policy.max_gap_s)
    fresh = step & (~resumed | gap)
    kind = np.where(duplicate, DUPLICATE, np.where(late, OUT_OF_ORDER, STEP))
    dt = np.where(fresh, policy.first_dt, t - last_t)
    reset: list[str | None] = [None] * len(t)
    for b in np.flatnonzero(fresh).tolist():
        if gap[b]:
            reset[b] = ResetReason.GAP.value
        elif expired[b]:
            reset[b] = ResetReason.EXPIRED.value
        else:
            reset[b] = ResetReason.FIRST_EVENT.value
    count = np.where(resumed, records.count, 0).astype(np.uint64) + np.uint64(1)
    created = np.where(resumed, records.created, now)
    return LanePlan(kind, dt, fresh, resumed, reset, count, created, last_t, base, originals)


def windows_after(
    plan: LanePlan, rows: np.ndarray, t: np.ndarray, ids: list[str | None],
    y: list[list[float]], policy: Policy,
) -> list[RecentWindow | None]:  # fmt: skip
    """The dedupe window stored after the steps of ``rows`` (``y[j]``: row ``rows[j]``'s
    presented outputs): the carried window with the event appended when it has an id."""
    window = policy.dedupe_window
    out: list[RecentWindow | None] = []
    for j, b in enumerate(rows.tolist()):
        base = plan.base[b]
        event_id = ids[b]
        if event_id is None or window <= 0:
            out.append(base if base.n else None)
            continue
        entry = RecentEntry(
            event_id, float(t[b]), float(plan.dt[b]), tuple(y[j]), plan.reset[b],
            int(plan.count[b]),
        )  # fmt: skip
        out.append(base.pushed(entry, window))
    return out
