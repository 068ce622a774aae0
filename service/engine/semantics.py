"""What happens to each event of one stream: pure decisions, no model, no store, no clock.

Given the stream's stored record (or none) and the events of a batch for that stream in arrival
order, :func:`plan_stream` decides per event (DESIGN §4):

1. **Duplicate** when its id is in the stream's dedupe window (the ids of the last
   ``dedupe_window`` applied events, including those applied earlier in this batch): the
   original prediction is returned, nothing advances. Checked first, so a retried batch gets
   its original answers rather than out-of-order rejections.
2. **Out of order** when ``t`` is before the last applied event's time: rejected, untouched.
   ``t`` equal to it is applied with Δt = 0.
3. Otherwise it is a **step**, with Δt the float64 difference of the two timestamps, except:
   - the first event of a fresh stream: Δt = ``first_dt``, the state starts from
     ``init_state``, reset reason ``"first_event"`` (no record), ``"model_change"`` (the record
     belongs to another model version) or ``"expired"`` (no write for longer than ``ttl_s``).
     The stream restarts: event count, creation time and dedupe window start afresh.
   - a gap ``t - last_t > max_gap_s``: the state is re-initialised before the step, Δt =
     ``first_dt``, reason ``"gap"``. The stream goes on: count and dedupe window are kept.
4. **Non-finite**: the engine refuses an event whose step would store a non-finite state or
   answer a non-finite output, and plans the stream again with that event left out
   (``refused``); see :class:`NonFinite`.

Expiry is decided here rather than by the key disappearing: the store keeps an idle record for
a grace period after ``ttl_s`` so that the next event can report ``"expired"``; once the key
itself is gone the next event is a ``"first_event"``.

:func:`build_record` then folds the computed outputs and final state into the record to store.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Protocol

from service.store.reasons import ResetReason
from service.store.recent import RecentEntry, RecentWindow
from service.store.record import StreamRecord

_NO_WINDOW = RecentWindow.empty()


@dataclass(frozen=True, slots=True)
class Policy:
    """The stream rules for one served model."""

    model: str
    version: str
    first_dt: float
    max_gap_s: float
    ttl_s: float
    dedupe_window: int


class Timed(Protocol):
    """What the decisions need of an event (the engine's events have it)."""

    @property
    def t(self) -> float: ...
    @property
    def event_id(self) -> str | None: ...


@dataclass(slots=True)  # not frozen: built per event, frozen costs ~1 µs more each
class Incoming:
    """An event as the decisions see it, where there is no engine event (tests, tools)."""

    t: float
    event_id: str | None = None


@dataclass(slots=True)  # not frozen: built per event, frozen costs ~1 µs more each
class Step:
    """Event ``index`` advances the state by ``dt`` seconds.

    ``fresh``: the state is re-initialised just before this step. ``count``: events applied to
    the stream after this one.
    """

    index: int
    dt: float
    reset: str | None
    fresh: bool
    count: int


@dataclass(slots=True)  # not frozen: built per event, frozen costs ~1 µs more each
class Duplicate:
    """Event ``index`` repeats an applied one: ``original`` from the stored window, or the step
    of event ``of_index`` earlier in this batch."""

    index: int
    original: RecentEntry | None = None
    of_index: int | None = None


@dataclass(slots=True)  # not frozen: built per event, frozen costs ~1 µs more each
class OutOfOrder:
    """Event ``index`` is older than the last applied event (at ``last_t``)."""

    index: int
    last_t: float


@dataclass(slots=True)  # not frozen: built per event, frozen costs ~1 µs more each
class NonFinite:
    """Event ``index`` was refused: its step made the state or outputs non-finite (the engine
    found that, then planned the stream again as if the event had never been sent)."""

    index: int


Outcome = Step | Duplicate | OutOfOrder | NonFinite


@dataclass(slots=True)  # not frozen: built per event, frozen costs ~1 µs more each
class Plan:
    """The decisions for one stream's events.

    ``resume``: the first step continues from the stored state (else the stream restarts from
    ``init_state``). ``base_recent``: the stored dedupe window that carries over. ``created``:
    creation time of the stream after this plan (``None``: it restarts, use the write time).
    """

    outcomes: tuple[Outcome, ...]
    steps: tuple[Step, ...]
    resume: bool
    base_recent: RecentWindow
    created: float | None

    @property
    def writes(self) -> bool:
        return bool(self.steps)


def restart_reason(record: StreamRecord | None, policy: Policy, now: float) -> str | None:
    """Why a stored record cannot be continued (``None``: it can)."""
    if record is None:
        return ResetReason.FIRST_EVENT.value
    if record.version != policy.version or record.model != policy.model:
        return ResetReason.MODEL_CHANGE.value
    if now - record.updated > policy.ttl_s:
        return ResetReason.EXPIRED.value
    return None


def is_live(record: StreamRecord | None, policy: Policy, now: float) -> bool:
    """The record exists and has not expired (it may belong to another model version)."""
    return record is not None and now - record.updated <= policy.ttl_s


def plan_stream(
    record: StreamRecord | None,
    events: Sequence[Timed],
    policy: Policy,
    now: float,
    refused: Collection[int] = frozenset(),
) -> Plan:
    """Decide every event of one stream (see the module docstring). ``refused``: indices of
    events whose step went non-finite; each is answered :class:`NonFinite` and the others are
    decided as if it had never been sent."""
    restart = restart_reason(record, policy, now)
    base = record if restart is None else None
    window = max(0, policy.dedupe_window)
    base_recent = base.recent.last(window) if base is not None else _NO_WINDOW
    # The window while planning is base_recent followed by this batch's steps with an id, cut
    # to the last ``window``: base entry i stays in it while i >= n_base + kept - window, and the
    # batch's j-th id while j >= kept - window (kept: steps with an id planned so far).
    n_base = base_recent.n
    batch_ids: dict[str, tuple[int, int]] = {}  # id -> (j, index of its event)
    kept = 0
    last_t = base.last_t if base is not None else None
    count = base.count if base is not None else 0
    outcomes: list[Outcome] = []
    steps: list[Step] = []
    for i, ev in enumerate(events):
        if i in refused:
            outcomes.append(NonFinite(i))
            continue
        if ev.event_id is not None and window:
            dup = _duplicate(i, ev.event_id, batch_ids, kept, base_recent, n_base, window)
            if dup is not None:
                outcomes.append(dup)
                continue
        if last_t is not None and ev.t < last_t:
            outcomes.append(OutOfOrder(i, last_t))
            continue
        if last_t is None:
            dt, fresh, reset = policy.first_dt, True, restart
        elif ev.t - last_t > policy.max_gap_s:
            dt, fresh, reset = policy.first_dt, True, ResetReason.GAP.value
        else:
            dt, fresh, reset = ev.t - last_t, False, None
        count += 1
        last_t = ev.t
        step = Step(i, dt, reset, fresh, count)
        outcomes.append(step)
        steps.append(step)
        if ev.event_id is not None and window:
            batch_ids[ev.event_id] = (kept, i)
            kept += 1
    return Plan(
        outcomes=tuple(outcomes),
        steps=tuple(steps),
        resume=base is not None,
        base_recent=base_recent,
        created=base.created if base is not None else None,
    )


def _duplicate(
    index: int,
    event_id: str,
    batch_ids: dict[str, tuple[int, int]],
    kept: int,
    base_recent: RecentWindow,
    n_base: int,
    window: int,
) -> Duplicate | None:
    """Event ``index`` as a duplicate of an id still in the window, else ``None``."""
    earlier = batch_ids.get(event_id)
    if earlier is not None and earlier[0] >= kept - window:
        return Duplicate(index, of_index=earlier[1])
    if earlier is None:  # an id applied in this batch is newer than any stored one
        stored = base_recent.find(event_id)
        if stored is not None and stored >= n_base + kept - window:
            return Duplicate(index, original=base_recent[stored])
    return None


def build_record(
    plan: Plan,
    policy: Policy,
    events: Sequence[Timed],
    outputs: Sequence[tuple[float, ...]],
    h: bytes,
    x: bytes,
    now: float,
) -> StreamRecord:
    """The record after ``plan``'s steps. ``outputs[j]``: presented outputs of ``plan.steps[j]``;
    ``h``, ``x``: final state and last applied input (raw float32)."""
    if not plan.steps:
        raise ValueError("a plan without steps writes no record")
    if len(outputs) != len(plan.steps):
        raise ValueError(f"{len(plan.steps)} steps but {len(outputs)} outputs")
    new = [
        RecentEntry(ev.event_id, ev.t, step.dt, tuple(y), step.reset, step.count)
        for step, y in zip(plan.steps, outputs, strict=True)
        if (ev := events[step.index]).event_id is not None
    ]
    last = plan.steps[-1]
    return StreamRecord(
        model=policy.model,
        version=policy.version,
        h=h,
        x=x,
        last_t=events[last.index].t,
        count=last.count,
        created=plan.created if plan.created is not None else now,
        updated=now,
        recent=plan.base_recent.extended(new).last(policy.dedupe_window),
    )
