"""Per-stream decisions (DESIGN §4), pure: order, duplicates, first events, gaps, expiry and
model changes, and the record that results."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.engine.semantics import (
    Duplicate,
    Incoming,
    OutOfOrder,
    Policy,
    Step,
    build_record,
    is_live,
    plan_stream,
    restart_reason,
)
from service.store.recent import RecentEntry, RecentWindow
from service.store.record import StreamRecord, floats_to_f32

POLICY = Policy(
    model="m", version="v1", first_dt=0.5, max_gap_s=100.0, ttl_s=1000.0, dedupe_window=3
)
NOW = 50_000.0


def stored(
    last_t: float = 10.0,
    count: int = 5,
    recent: tuple[RecentEntry, ...] = (),
    version: str = "v1",
    updated: float = NOW - 1,
) -> StreamRecord:
    return StreamRecord(
        model="m",
        version=version,
        h=floats_to_f32([1.0, 2.0]),
        x=floats_to_f32([3.0]),
        last_t=last_t,
        count=count,
        created=1.0,
        updated=updated,
        recent=RecentWindow.of(recent),
    )


def ev(t: float, event_id: str | None = None) -> Incoming:
    return Incoming(t, event_id)


def test_first_event_of_a_stream() -> None:
    plan = plan_stream(None, [ev(7.0, "a"), ev(9.5)], POLICY, NOW)
    assert plan.outcomes == (
        Step(0, 0.5, "first_event", True, 1),
        Step(1, 2.5, None, False, 2),
    )
    assert not plan.resume
    assert plan.created is None


def test_continuing_stream_uses_float64_time_differences() -> None:
    t0 = 1_700_000_000.123456
    plan = plan_stream(stored(last_t=t0), [ev(t0 + 0.001), ev(t0 + 0.001)], POLICY, NOW)
    assert plan.resume
    assert [o.dt for o in plan.steps] == [(t0 + 0.001) - t0, 0.0]  # equal times: Δt = 0
    assert [o.count for o in plan.steps] == [6, 7]
    assert plan.created == 1.0


def test_out_of_order_is_rejected_and_does_not_move_last_t() -> None:
    plan = plan_stream(stored(last_t=10.0), [ev(9.0), ev(12.0), ev(11.0), ev(12.0)], POLICY, NOW)
    assert plan.outcomes == (
        OutOfOrder(0, 10.0),
        Step(1, 2.0, None, False, 6),
        OutOfOrder(2, 12.0),
        Step(3, 0.0, None, False, 7),
    )


def test_duplicates_from_the_stored_window_come_first() -> None:
    entry = RecentEntry("a", 8.0, 1.0, (0.5,), None, 4)
    plan = plan_stream(stored(recent=(entry,)), [ev(8.0, "a"), ev(11.0, "b")], POLICY, NOW)
    # "a" is older than last_t but is a duplicate, not an out-of-order event
    assert plan.outcomes == (Duplicate(0, original=entry), Step(1, 1.0, None, False, 6))


def test_duplicates_within_one_batch_point_at_the_first() -> None:
    plan = plan_stream(None, [ev(1.0, "a"), ev(2.0, "b"), ev(1.0, "a"), ev(3.0, "b")], POLICY, NOW)
    assert plan.outcomes[2] == Duplicate(2, of_index=0)
    assert plan.outcomes[3] == Duplicate(3, of_index=1)
    assert len(plan.steps) == 2


def test_rejected_events_do_not_enter_the_window() -> None:
    plan = plan_stream(stored(last_t=10.0), [ev(5.0, "a"), ev(5.0, "a")], POLICY, NOW)
    assert plan.outcomes == (OutOfOrder(0, 10.0), OutOfOrder(1, 10.0))


def test_the_window_is_bounded() -> None:
    recent = tuple(RecentEntry(f"e{i}", float(i), 1.0, (), None, i) for i in range(1, 6))
    record = stored(last_t=5.0, recent=recent)
    events = [ev(5.0, "e3"), ev(5.0, "e2"), ev(6.0, "n1"), ev(6.0, "e3"), ev(6.0, "n1")]
    plan = plan_stream(record, events, POLICY, NOW)
    # window 3: only e3, e4, e5 are remembered
    assert plan.base_recent == recent[2:]
    assert plan.outcomes[0] == Duplicate(0, original=recent[2])
    assert isinstance(plan.outcomes[1], Step)  # e2 fell out of the window: applied again
    assert isinstance(plan.outcomes[2], Step)  # window now e5, e2, n1
    assert isinstance(plan.outcomes[3], Step)  # e3 was pushed out by e2 and n1
    assert plan.outcomes[4] == Duplicate(4, of_index=2)


def test_window_zero_disables_deduplication() -> None:
    policy = Policy("m", "v1", 0.5, 100.0, 1000.0, dedupe_window=0)
    plan = plan_stream(None, [ev(1.0, "a"), ev(1.0, "a")], policy, NOW)
    assert [type(o) for o in plan.outcomes] == [Step, Step]


def test_gap_resets_the_state_but_keeps_the_stream() -> None:
    entry = RecentEntry("a", 10.0, 1.0, (0.5,), None, 5)
    plan = plan_stream(stored(recent=(entry,)), [ev(110.0), ev(210.5), ev(211.0)], POLICY, NOW)
    assert plan.outcomes == (
        Step(0, 100.0, None, False, 6),  # exactly max_gap: not a gap
        Step(1, 0.5, "gap", True, 7),
        Step(2, 0.5, None, False, 8),
    )
    assert plan.base_recent == (entry,)
    assert plan.created == 1.0


def test_model_change_restarts_the_stream() -> None:
    entry = RecentEntry("a", 10.0, 1.0, (0.5,), None, 5)
    record = stored(version="v0", recent=(entry,))
    plan = plan_stream(record, [ev(3.0, "a")], POLICY, NOW)  # older, same id: still applied
    assert plan.outcomes == (Step(0, 0.5, "model_change", True, 1),)
    assert not plan.resume
    assert plan.base_recent == ()
    assert plan.created is None
    assert restart_reason(record, POLICY, NOW) == "model_change"


def test_expiry_restarts_the_stream() -> None:
    record = stored(updated=NOW - 1000.5)
    plan = plan_stream(record, [ev(1.0)], POLICY, NOW)
    assert plan.outcomes == (Step(0, 0.5, "expired", True, 1),)
    assert not is_live(record, POLICY, NOW)
    assert is_live(stored(updated=NOW - 999), POLICY, NOW)
    assert not is_live(None, POLICY, NOW)


def test_build_record() -> None:
    entry = RecentEntry("old", 10.0, 1.0, (0.0, 0.0), None, 5)
    events = [ev(11.0, "a"), ev(12.0), ev(13.0, "b"), ev(14.0, "c"), ev(9.0, "d")]
    plan = plan_stream(stored(recent=(entry,)), events, POLICY, NOW)
    outputs = [(float(i), -float(i)) for i in range(4)]
    rec = build_record(
        plan, POLICY, events, outputs, floats_to_f32([9.0, 9.0]), floats_to_f32([8.0]), NOW
    )
    assert (rec.model, rec.version, rec.last_t, rec.count) == ("m", "v1", 14.0, 9)
    assert (rec.created, rec.updated) == (1.0, NOW)
    assert rec.h == floats_to_f32([9.0, 9.0])
    assert [e.event_id for e in rec.recent] == ["a", "b", "c"]  # window 3, "old" pushed out
    assert rec.recent[1] == RecentEntry("b", 13.0, 1.0, (2.0, -2.0), None, 8)


def test_build_record_of_a_new_stream_is_created_now() -> None:
    events = [ev(1.0, "a")]
    plan = plan_stream(None, events, POLICY, NOW)
    rec = build_record(plan, POLICY, events, [(1.0,)], b"", b"", NOW)
    assert rec.created == NOW
    assert rec.recent == (RecentEntry("a", 1.0, 0.5, (1.0,), "first_event", 1),)


@settings(max_examples=60, deadline=None)
@given(
    times=st.lists(st.integers(0, 400), max_size=30),
    ids=st.lists(st.one_of(st.none(), st.sampled_from("abcdef")), min_size=30, max_size=30),
    start=st.one_of(st.none(), st.integers(0, 200)),
)
def test_invariants(times: list[int], ids: list[str | None], start: int | None) -> None:
    record = None if start is None else stored(last_t=float(start), count=3)
    events = [ev(float(t), i) for t, i in zip(times, ids, strict=False)]
    plan = plan_stream(record, events, POLICY, NOW)
    assert [o.index for o in plan.outcomes] == list(range(len(events)))
    applied = [events[s.index].t for s in plan.steps]
    assert applied == sorted(applied)  # applied in event-time order
    first_count = 1 if record is None else 4
    assert [s.count for s in plan.steps] == list(range(first_count, first_count + len(plan.steps)))
    applied_ids = [events[s.index].event_id for s in plan.steps if events[s.index].event_id]
    for a, b in itertools.pairwise(applied_ids):
        assert a != b  # an id is never applied twice in a row within the window
    for s in plan.steps:
        assert s.dt >= 0
        assert s.fresh == (s.reset is not None)


# -- the dedupe window keeps exactly dedupe_window ids (issue 16, item 1) ---------------------
WINDOW_32 = Policy("m", "v1", 0.5, 100.0, 1000.0, dedupe_window=32)


def _one_per_batch(ids: list[str], t: float = 5.0) -> StreamRecord:
    """The record after each id was sent alone (one batch each), all at time ``t``."""
    record: StreamRecord | None = None
    for i, event_id in enumerate(ids):
        events = [ev(t, event_id)]
        plan = plan_stream(record, events, WINDOW_32, NOW)
        assert isinstance(plan.outcomes[0], Step)
        record = build_record(plan, WINDOW_32, events, [(float(i),)], b"", b"", NOW)
    assert record is not None
    return record


def test_window_last_keeps_exactly_n() -> None:
    def window(n: int) -> RecentWindow:
        return RecentWindow.of(RecentEntry(f"e{i}", float(i), 1.0, (), None, i) for i in range(n))

    assert window(20).last(32) == window(20)
    assert [e.count for e in window(40).last(32)] == list(range(8, 40))
    assert window(5).last(0) == ()
    assert RecentWindow.empty().last(3) == ()


@pytest.mark.parametrize("n", [20, 31, 32, 33, 40])
def test_retries_at_an_equal_timestamp_are_duplicates_within_the_window(n: int) -> None:
    ids = [f"z{i}" for i in range(n)]
    record = _one_per_batch(ids)
    assert [e.event_id for e in record.recent] == ids[-32:]
    assert record.count == n
    for i, event_id in enumerate(ids):
        plan = plan_stream(record, [ev(5.0, event_id)], WINDOW_32, NOW)
        (outcome,) = plan.outcomes
        if i >= n - 32:  # in the window: the original answer, nothing applied
            assert isinstance(outcome, Duplicate)
            assert outcome.original is not None
            assert (outcome.original.y, outcome.original.count) == ((float(i),), i + 1)
            assert not plan.writes
        else:  # out of the window; an equal time is in order, so it is applied again
            assert isinstance(outcome, Step)


def test_a_batch_of_retries_keeps_the_whole_window() -> None:
    record = _one_per_batch([f"z{i}" for i in range(20)])
    plan = plan_stream(record, [ev(5.0, f"z{i}") for i in range(20)], WINDOW_32, NOW)
    assert all(isinstance(o, Duplicate) for o in plan.outcomes)
    assert len(plan.base_recent) == 20
