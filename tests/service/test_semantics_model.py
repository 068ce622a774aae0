"""A model-based test of the stream semantics (DESIGN §4; issue 16): hypothesis drives random
interleavings of new events, events that would overflow the state, equal timestamps, retries of
any of the last 40 ids (across the 32-id window and beyond it), out-of-order events, gaps beyond
the reset limit, TTL expiry (an injected clock), state export/import and model changes through
two engines sharing one store, and checks every answer against :class:`Reference`, a plain
model of the rules written here, whose states come from stepping the model offline (outputs and
states within ``ATOL``: the engine's padded batches are not bit-identical to stepping one event
at a time).

Runs on the in-process store and on the harness's Redis; each example is a fresh tenant."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from service.engine import Engine, EngineConfig, Event, Prediction, Rejection
from service.live.bus import MemoryLiveBus
from service.metrics import Metrics
from service.store import MemoryStore, RedisStore, StateStore
from tests.service.test_poison import POISON, FragileModel

T0 = 1_767_225_600.0
WINDOW = 32
MAX_GAP_S = 100.0
TTL_S = 1000.0
ATOL = 1e-5
STREAMS = ("a", "b")
DTS = (0.0, 0.0, 0.25, 1.5, MAX_GAP_S + 20.0)  # equal timestamps twice as often; one gap
# Leaky integrators whose state overflows when x[0] >= POISON (ordinary inputs are far below).
MODELS = {"v1": FragileModel(version="v1", seed=0), "v2": FragileModel(version="v2", seed=1)}
_tenants = itertools.count()
R = TypeVar("R")


@dataclass
class Answer:
    """What an applied event was answered; a duplicate must get it back."""

    t: float
    dt: float
    y: tuple[float, ...]
    reset: str | None
    count: int


@dataclass
class StreamRef:
    """One stream as DESIGN §4 says it must be."""

    version: str
    last_t: float
    count: int
    h: torch.Tensor
    updated: float
    window: list[tuple[str, Answer]] = field(default_factory=list)


class Reference:
    """The semantics, one event at a time, with the model stepped offline."""

    def __init__(self) -> None:
        self.streams: dict[str, StreamRef] = {}
        self.version = "v1"

    def expect(
        self, stream: str, t: float, x: tuple[float, ...], event_id: str | None, now: float
    ) -> Answer | str:
        """The answer (an :class:`Answer`, ``"duplicate:<id>"``, ``"out_of_order"`` or
        ``"non_finite_state"``) and the reference advanced as the engine must advance."""
        model = MODELS[self.version]
        ref = self.streams.get(stream)
        reset = None
        if ref is None:
            reset = "first_event"
        elif ref.version != self.version:
            reset = "model_change"
        elif now - ref.updated > TTL_S:
            reset = "expired"
        if reset is None and ref is not None:
            if event_id is not None and event_id in dict(ref.window):
                return f"duplicate:{event_id}"
            if t < ref.last_t:
                return "out_of_order"
        if reset is not None or ref is None:
            h, dt, count, window = model.init_state(1), model.default_dt, 0, []
        elif t - ref.last_t > MAX_GAP_S:
            h, dt, count, window, reset = (
                model.init_state(1),
                model.default_dt,
                ref.count,
                ref.window,
                "gap",
            )
        else:
            h, dt, count, window = ref.h, t - ref.last_t, ref.count, ref.window
        with torch.inference_mode():
            y, h = model.step(torch.tensor([x]), torch.tensor([dt], dtype=torch.float32), h)
        if not (torch.isfinite(y).all() and torch.isfinite(h).all()):
            return "non_finite_state"  # refused: nothing changes
        answer = Answer(t, dt, tuple(y[0].tolist()), reset, count + 1)
        if event_id is not None:
            window = [*window, (event_id, answer)][-WINDOW:]
        self.streams[stream] = StreamRef(self.version, t, count + 1, h, now, window)
        return answer


class SemanticsMachine(RuleBasedStateMachine):
    """Two engines over one store, against :class:`Reference`."""

    redis_url: str | None = None

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.now = T0
        self.tenant = f"t{next(_tenants)}"
        self.ref = Reference()
        self.stores: list[StateStore] = []
        shared = MemoryStore()
        for _ in range(2):
            self.stores.append(RedisStore(self.redis_url) if self.redis_url else shared)
        self.engines: list[Engine] = []
        self.applied: dict[str, list[tuple[str, float, Answer]]] = {s: [] for s in STREAMS}
        self.ids = itertools.count()
        self.x_rng = np.random.default_rng(0)

    def run(self, coro: Coroutine[Any, Any, R]) -> R:
        return self.loop.run_until_complete(coro)

    def start_engines(self, version: str) -> None:
        for engine in self.engines:
            self.run(engine.stop())
        config = EngineConfig(
            max_delay_s=0.0005,
            max_gap_s=MAX_GAP_S,
            state_ttl_s=TTL_S,
            dedupe_window=WINDOW,
            publish_live=False,
            max_abs_input=float("inf"),
        )
        self.engines = [
            Engine(
                {"m": MODELS[version]}, store, MemoryLiveBus(), Metrics(), config, clock=self.clock
            )
            for store in self.stores
        ]
        for engine in self.engines:
            self.run(engine.start())
        self.ref.version = version

    def clock(self) -> float:
        return self.now

    def teardown(self) -> None:
        for engine in self.engines:
            self.run(engine.stop())
        for store in {id(s): s for s in self.stores}.values():
            self.run(store.close())
        self.loop.close()

    # -- helpers --------------------------------------------------------------------------
    def x(self) -> tuple[float, ...]:
        return tuple(float(v) for v in self.x_rng.uniform(-2, 2, size=2).astype(np.float32))

    def check(self, stream: str, event: Event, got: Any, want: Answer | str) -> None:
        if isinstance(want, str) and want.startswith("duplicate:"):
            assert isinstance(got, Prediction), (want, got)
            assert got.duplicate, (want, got)
            (original,) = [a for i, _, a in self.applied[stream] if i == event.event_id][-1:]
            assert (got.t, got.dt, got.y, got.reset, got.count) == (
                original.t,
                original.dt,
                original.y,
                original.reset,
                original.count,
            )
        elif want in ("out_of_order", "non_finite_state"):
            assert isinstance(got, Rejection), got
            assert got.code == want, got
        else:
            assert isinstance(want, Answer)
            assert isinstance(got, Prediction), (want, got)
            assert not got.duplicate, (want, got)
            assert (got.t, got.reset, got.count) == (want.t, want.reset, want.count)
            assert got.dt == pytest.approx(want.dt, abs=1e-9)
            np.testing.assert_allclose(got.y, want.y, atol=ATOL)
            if event.event_id is not None:
                self.applied[stream].append((event.event_id, event.t, got_answer(got)))

    def send(self, engine: int, stream: str, events: list[Event]) -> None:
        wants = [self.ref.expect(stream, e.t, e.x, e.event_id, self.now) for e in events]
        results = self.run(self.engines[engine].submit(self.tenant, "m", events))
        for e, got, want in zip(events, results, wants, strict=True):
            self.check(stream, e, got, want)

    def last_t(self, stream: str) -> float:
        ref = self.ref.streams.get(stream)
        return T0 if ref is None else ref.last_t

    # -- rules ----------------------------------------------------------------------------
    @initialize()
    def start(self) -> None:
        self.start_engines("v1")

    @rule(
        engine=st.integers(0, 1),
        stream=st.sampled_from(STREAMS),
        dt=st.sampled_from(DTS),
        with_id=st.booleans(),
    )
    def new_event(self, engine: int, stream: str, dt: float, with_id: bool) -> None:
        event_id = f"{stream}{next(self.ids)}" if with_id else None
        self.send(engine, stream, [Event(stream, self.last_t(stream) + dt, self.x(), event_id)])

    @rule(
        engine=st.integers(0, 1),
        stream=st.sampled_from(STREAMS),
        n=st.sampled_from([WINDOW - 1, WINDOW, WINDOW + 1, WINDOW + 2]),
        one_batch=st.booleans(),
    )
    def burst_at_one_timestamp(self, engine: int, stream: str, n: int, one_batch: bool) -> None:
        t = self.last_t(stream)
        events = [Event(stream, t, self.x(), f"{stream}{next(self.ids)}") for _ in range(n)]
        if one_batch:
            self.send(engine, stream, events)
        else:
            for e in events:
                self.send(engine, stream, [e])

    @rule(engine=st.integers(0, 1), stream=st.sampled_from(STREAMS), back=st.integers(1, 40))
    def retry(self, engine: int, stream: str, back: int) -> None:
        applied = self.applied[stream]
        if not applied:
            return
        event_id, t, _ = applied[-min(back, len(applied))]
        self.send(engine, stream, [Event(stream, t, self.x(), event_id)])

    @rule(
        engine=st.integers(0, 1), stream=st.sampled_from(STREAMS), by=st.sampled_from([1e-6, 0.5])
    )
    def out_of_order(self, engine: int, stream: str, by: float) -> None:
        if stream in self.ref.streams:
            t = self.last_t(stream) - by
            self.send(engine, stream, [Event(stream, t, self.x(), f"{stream}{next(self.ids)}")])

    @rule(
        engine=st.integers(0, 1),
        stream=st.sampled_from(STREAMS),
        dt=st.sampled_from(DTS),
        then=st.integers(0, 2),
    )
    def poisoning_event(self, engine: int, stream: str, dt: float, then: int) -> None:
        """An event that overflows the state, alone or followed in its batch by good ones."""
        t = self.last_t(stream) + dt
        events = [Event(stream, t, (POISON, 0.0), f"{stream}{next(self.ids)}")]
        events += [
            Event(stream, t + 0.5 * i, self.x(), f"{stream}{next(self.ids)}") for i in range(then)
        ]
        self.send(engine, stream, events)

    @rule(stream=st.sampled_from(STREAMS))
    def both_engines_at_once(self, stream: str) -> None:
        """The same new event through both engines concurrently: applied exactly once."""
        event = Event(stream, self.last_t(stream) + 0.25, self.x(), f"{stream}{next(self.ids)}")
        want = self.ref.expect(stream, event.t, event.x, event.event_id, self.now)
        results = self.run(self.both([event]))
        firsts = [r for (r,) in results if isinstance(r, Prediction) and not r.duplicate]
        dups = [r for (r,) in results if isinstance(r, Prediction) and r.duplicate]
        assert (len(firsts), len(dups)) == (1, 1), results
        self.check(stream, event, firsts[0], want)
        assert dups[0].y == firsts[0].y
        assert dups[0].count == firsts[0].count

    async def both(self, events: list[Event]) -> list[list[Any]]:
        return list(
            await asyncio.gather(*(e.submit(self.tenant, "m", events) for e in self.engines))
        )

    @rule(seconds=st.sampled_from([10.0, TTL_S + 1.0]))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds

    @precondition(lambda self: bool(self.ref.streams))
    @rule(data=st.data())
    def export_import(self, data: st.DataObject) -> None:
        source = data.draw(st.sampled_from(sorted(self.ref.streams)))
        target = data.draw(st.sampled_from(STREAMS))
        engine = self.engines[data.draw(st.integers(0, 1))]
        snap = self.run(engine.export_state(self.tenant, "m", source))
        ref = self.ref.streams[source]
        if snap is None or ref.version != self.ref.version:
            return  # expired, or of the other model version: the import would be refused
        self.run(engine.import_state(self.tenant, "m", target, snap))
        self.ref.streams[target] = StreamRef(
            ref.version, ref.last_t, ref.count, ref.h.clone(), self.now, list(ref.window)
        )
        self.applied[target] = [(i, a.t, a) for i, a in ref.window]

    @rule()
    def model_change(self) -> None:
        self.start_engines("v2" if self.ref.version == "v1" else "v1")

    # -- invariant ------------------------------------------------------------------------
    @invariant()
    def states_match_the_reference(self) -> None:
        if not self.engines:
            return
        for stream, ref in self.ref.streams.items():
            if ref.version != self.ref.version or self.now - ref.updated > TTL_S:
                continue  # the engine shows no live state of another version or an expired one
            snap = self.run(self.engines[0].export_state(self.tenant, "m", stream))
            assert snap is not None
            assert (snap.last_t, snap.count) == (ref.last_t, ref.count)
            assert [e.event_id for e in snap.recent] == [i for i, _ in ref.window]
            np.testing.assert_allclose(snap.h, ref.h[0].tolist(), atol=ATOL)


def got_answer(p: Prediction) -> Answer:
    return Answer(p.t, p.dt, p.y, p.reset, p.count)


RUN = settings(
    max_examples=30,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def test_semantics_on_the_in_process_store() -> None:
    SemanticsMachine.redis_url = None
    run_state_machine_as_test(SemanticsMachine, settings=RUN)


@pytest.mark.integration
def test_semantics_on_redis(redis_url: str) -> None:
    SemanticsMachine.redis_url = redis_url
    try:
        run_state_machine_as_test(SemanticsMachine, settings=RUN)
    finally:
        SemanticsMachine.redis_url = None
