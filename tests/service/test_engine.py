"""The engine against DESIGN §4: predictions equal offline stepping, order, duplicates, first
events, gaps, expiry, model changes, concurrent writers, draining, live feeds, and the admin
operations. Store-touching tests run on both the in-process store and a real Redis."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import math
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import pytest
import torch

from liquidcore.numerics import replay_mismatch
from service.engine import (
    Engine,
    EngineConfig,
    EngineStopped,
    Event,
    InvalidEvent,
    InvalidState,
    InvalidTime,
    Prediction,
    Rejection,
    ServableModel,
    StateConflict,
    StateSnapshot,
    StateUnreadable,
    StreamNotFound,
    UnknownModel,
)
from service.engine.encode import rfc3339
from service.live.bus import LiveBus, MemoryLiveBus, RedisLiveBus
from service.metrics import Metrics
from service.store import CasWrite, MemoryStore, StateStore, Versioned
from service.store.keys import live_channel, state_key
from service.store.record import StreamRecord, encode_record, floats_to_f32

pytestmark = pytest.mark.anyio

T0 = 1_700_000_000.0  # event times are realistic epoch seconds (float64 matters)
TENANT = "acme"


@asynccontextmanager
async def running(engine: Engine) -> AsyncIterator[Engine]:
    await engine.start()
    try:
        yield engine
    finally:
        await engine.stop()


def make_engine(
    model: ServableModel | dict[str, ServableModel],
    store: StateStore,
    *,
    live: LiveBus | None = None,
    metrics: Metrics | None = None,
    clock: Callable[[], float] | None = None,
    **config: Any,
) -> Engine:
    models = model if isinstance(model, dict) else {"m": model}
    config.setdefault("max_delay_s", 0.001)
    kwargs: dict[str, Any] = {} if clock is None else {"clock": clock}
    return Engine(
        models,
        store,
        live or MemoryLiveBus(),
        metrics or Metrics(),
        EngineConfig(**config),
        **kwargs,
    )


def offline(
    model: Any,
    events: Sequence[tuple[float, Sequence[float]]],
    first_dt: float,
    h: torch.Tensor | None = None,
    last_t: float | None = None,
) -> tuple[list[tuple[float, ...]], torch.Tensor]:
    """``model.step`` one event at a time, as a user would run it offline."""
    ys = []
    with torch.inference_mode():
        for t, x in events:
            if last_t is None:
                dt, h = first_dt, model.init_state(1)
            else:
                dt = t - last_t  # float64 difference of the timestamps
            assert h is not None
            y, h = model.step(
                torch.tensor([list(x)], dtype=torch.float32),
                torch.tensor([dt], dtype=torch.float32),
                h,
            )
            ys.append(tuple(model.present(y)[0].tolist()))
            last_t = t
    assert h is not None
    return ys, h


def irregular_stream(n: int, rng: random.Random, inputs: int = 2) -> list[tuple[float, tuple]]:
    t = T0 + rng.uniform(0, 100)
    out = []
    for i in range(n):
        t += [0.0, 1e-6, 0.013, 0.5, 3.0, 47.0][rng.randrange(6)] if i else 0.0
        out.append((t, tuple(rng.uniform(-2, 2) for _ in range(inputs))))
    return out


def events_of(
    stream: str, pairs: Sequence[tuple[float, Sequence[float]]], ids: bool = False
) -> list[Event]:
    return [
        Event(stream, t, tuple(x), event_id=f"{stream}-{i}" if ids else None)
        for i, (t, x) in enumerate(pairs)
    ]


def close(a: Sequence[float], b: Sequence[float], tol: float = 1e-6) -> bool:
    return len(a) == len(b) and all(abs(p - q) <= tol for p, q in zip(a, b, strict=True))


def assert_replayed(got: Any, want: Any, steps: int) -> None:
    """``got`` agrees with ``want`` within the numerics contract after ``steps`` events
    (docs/numerics.md): batched and padded serving is not bit-identical to stepping one stream
    alone on every CPU, so floats computed through different batch shapes are never ``==``."""
    problem = replay_mismatch(got, want, steps)
    assert problem is None, problem


def predictions(results: Sequence[Any]) -> list[Prediction]:
    assert all(isinstance(r, Prediction) for r in results), results
    return list(results)


# --- numerics ---------------------------------------------------------------------------------


async def test_predictions_and_states_equal_offline_stepping(
    store: StateStore, leaky: Callable[..., Any], metric: Callable[..., float]
) -> None:
    model = leaky()
    metrics = Metrics()
    rng = random.Random(1)
    streams = {f"dev-{i}": irregular_stream(12, rng) for i in range(5)}
    async with running(make_engine(model, store, metrics=metrics)) as engine:
        got: dict[str, list[Prediction]] = {s: [] for s in streams}
        for chunk in range(4):  # 4 rounds; in each, every stream sends 3 events concurrently
            rounds = await asyncio.gather(
                *(
                    engine.submit(TENANT, "m", events_of(s, ev[3 * chunk : 3 * chunk + 3]))
                    for s, ev in streams.items()
                )
            )
            for s, res in zip(streams, rounds, strict=True):
                got[s].extend(predictions(res))
        for s, evs in streams.items():
            ys, h = offline(model, evs, model.default_dt)
            assert_replayed([p.y for p in got[s]], ys, len(evs))
            assert [p.count for p in got[s]] == list(range(1, 13))
            assert [p.dt for p in got[s]][1:] == [b[0] - a[0] for a, b in itertools.pairwise(evs)]
            snap = await engine.export_state(TENANT, "m", s)
            assert snap is not None
            assert_replayed(snap.h, h[0].numpy(), len(evs))
            assert snap.last_t == evs[-1][0]  # decisions and inputs are exact
            assert snap.x_last == tuple(np.float32(v).item() for v in evs[-1][1])
    assert metric(metrics, "liquid_events_total", outcome="applied") == 60


async def test_one_model_call_per_batch_with_padding(
    store: StateStore, leaky: Callable[..., Any]
) -> None:
    model = leaky()
    rng = random.Random(2)
    a, b, c = irregular_stream(1, rng), irregular_stream(3, rng), irregular_stream(2, rng)
    async with running(make_engine(model, store, max_delay_s=0.05)) as engine:
        res = await engine.submit(
            TENANT, "m", [*events_of("a", a), *events_of("b", b), *events_of("c", c)]
        )
    assert model.calls == [(3, 3)]  # all streams of the batch in ONE call, padded to 3 steps
    ys = predictions(res)
    want = offline(model, a, 0.5)[0] + offline(model, b, 0.5)[0] + offline(model, c, 0.5)[0]
    assert_replayed([p.y for p in ys], want, 3)


async def test_a_stream_split_over_several_batches_keeps_its_order(
    store: StateStore, leaky: Callable[..., Any]
) -> None:
    model = leaky()
    evs = irregular_stream(10, random.Random(3))
    async with running(make_engine(model, store, max_batch=3, max_queue=64)) as engine:
        res = predictions(await engine.submit(TENANT, "m", events_of("s", evs)))
    assert len(model.calls) == 4
    assert_replayed([p.y for p in res], offline(model, evs, 0.5)[0], len(evs))
    assert [p.count for p in res] == list(range(1, 11))


async def test_classification_outputs_are_presented(
    store: StateStore, leaky: Callable[..., Any]
) -> None:
    model = leaky(classification=True, output_size=3)
    async with running(make_engine(model, store)) as engine:
        (p,) = predictions(await engine.submit(TENANT, "m", [Event("s", T0, (1.0, 2.0))]))
    assert math.isclose(sum(p.y), 1.0, rel_tol=1e-6)
    assert all(v > 0 for v in p.y)


# --- stream semantics ---------------------------------------------------------------------------


async def test_out_of_order_is_rejected_and_counted(
    store: StateStore, leaky: Callable[..., Any], metric: Callable[..., float]
) -> None:
    metrics = Metrics()
    async with running(make_engine(leaky(), store, metrics=metrics)) as engine:
        await engine.submit(TENANT, "m", [Event("s", T0 + 10, (1.0, 1.0))])
        before = await engine.export_state(TENANT, "m", "s")
        (rej,) = await engine.submit(TENANT, "m", [Event("s", T0 + 5, (9.0, 9.0), "late")])
        assert isinstance(rej, Rejection)
        assert (rej.code, rej.last_t, rej.event_id, rej.stream_id) == (
            "out_of_order",
            T0 + 10,
            "late",
            "s",
        )
        assert "before" in rej.message
        assert await engine.export_state(TENANT, "m", "s") == before  # untouched
        mixed = await engine.submit(
            TENANT,
            "m",
            [
                Event("s", T0 + 10, (1.0, 0.0)),
                Event("s", T0 + 9, (0.0, 0.0)),
                Event("s", T0 + 11, (0.0, 1.0)),
            ],
        )
        assert [type(r) for r in mixed] == [Prediction, Rejection, Prediction]
        assert isinstance(mixed[0], Prediction)
        assert mixed[0].dt == 0.0  # equal times are allowed: Δt = 0
        assert isinstance(mixed[2], Prediction)
        assert mixed[2].count == 3
    assert metric(metrics, "liquid_events_total", outcome="out_of_order") == 2


async def test_retrying_a_whole_batch_returns_the_original_answers(
    store: StateStore, leaky: Callable[..., Any], metric: Callable[..., float]
) -> None:
    metrics = Metrics()
    rng = random.Random(4)
    batch = events_of("s1", irregular_stream(4, rng), ids=True) + events_of(
        "s2", irregular_stream(3, rng), ids=True
    )
    async with running(make_engine(leaky(), store, metrics=metrics)) as engine:
        first = predictions(await engine.submit(TENANT, "m", batch))
        state = await engine.export_state(TENANT, "m", "s1")
        again = predictions(await engine.submit(TENANT, "m", batch))
        assert [p.duplicate for p in first] == [False] * 7
        assert [p.duplicate for p in again] == [True] * 7
        for a, b in zip(first, again, strict=True):
            assert (a.t, a.dt, a.y, a.reset, a.count, a.event_id, a.version) == (
                b.t,
                b.dt,
                b.y,
                b.reset,
                b.count,
                b.event_id,
                b.version,
            )
        assert await engine.export_state(TENANT, "m", "s1") == state  # not advanced
        # within one request: the second copy answers with the first's prediction
        dup = predictions(
            await engine.submit(
                TENANT,
                "m",
                [Event("s3", T0, (1.0, 1.0), "x"), Event("s3", T0 + 1, (2.0, 2.0), "x")],
            )
        )
        assert dup[1].duplicate
        assert not dup[0].duplicate
        assert (dup[1].y, dup[1].t, dup[1].count) == (dup[0].y, dup[0].t, 1)
    assert metric(metrics, "liquid_events_total", outcome="duplicate") == 8
    assert metric(metrics, "liquid_events_total", outcome="applied") == 8


async def test_first_event_uses_the_default_dt(
    store: StateStore, leaky: Callable[..., Any]
) -> None:
    model = leaky(default_dt=0.25)
    async with running(make_engine(model, store)) as engine:
        (p,) = predictions(await engine.submit(TENANT, "m", [Event("s", T0, (1.0, -1.0))]))
    assert (p.dt, p.reset, p.count, p.duplicate) == (0.25, "first_event", 1, False)
    assert_replayed(p.y, offline(model, [(T0, (1.0, -1.0))], 0.25)[0][0], 1)
    async with running(make_engine(model, store, first_event_dt_s=2.0)) as engine:
        (q,) = predictions(await engine.submit(TENANT, "m", [Event("other", T0, (1.0, -1.0))]))
    assert (q.dt, q.reset) == (2.0, "first_event")


async def test_a_gap_resets_the_state(
    store: StateStore, leaky: Callable[..., Any], metric: Callable[..., float]
) -> None:
    model = leaky()
    metrics = Metrics()
    evs = [
        (T0, (1.0, 2.0)),
        (T0 + 10, (0.5, 0.5)),
        (T0 + 10 + 60.5, (-1.0, 3.0)),
        (T0 + 72, (0.0, 1.0)),
    ]
    async with running(make_engine(model, store, metrics=metrics, max_gap_s=60)) as engine:
        res = predictions(await engine.submit(TENANT, "m", events_of("s", evs[:2])))
        res += predictions(await engine.submit(TENANT, "m", events_of("s", evs[2:])))
    assert [p.reset for p in res] == ["first_event", None, "gap", None]
    assert [p.dt for p in res] == [0.5, 10.0, 0.5, 72 - 70.5]
    assert [p.count for p in res] == [1, 2, 3, 4]  # the stream goes on
    # after the gap the state is as fresh as a new stream's
    assert_replayed([p.y for p in res[2:]], offline(model, evs[2:], 0.5)[0], 2)
    assert metric(metrics, "liquid_stream_resets_total", reason="gap") == 1
    assert metric(metrics, "liquid_events_total", outcome="reset") == 1
    assert metric(metrics, "liquid_events_total", outcome="applied") == 3


async def test_a_gap_in_the_middle_of_one_batch(
    store: StateStore, leaky: Callable[..., Any]
) -> None:
    model = leaky()
    evs = [(T0, (1.0, 2.0)), (T0 + 5, (0.5, 0.5)), (T0 + 500, (-1.0, 3.0)), (T0 + 501, (0.0, 1.0))]
    async with running(make_engine(model, store, max_gap_s=60)) as engine:
        res = predictions(await engine.submit(TENANT, "m", events_of("s", evs)))
    assert [p.reset for p in res] == ["first_event", None, "gap", None]
    want = offline(model, evs[:2], 0.5)[0] + offline(model, evs[2:], 0.5)[0]
    assert_replayed([p.y for p in res], want, 2)


async def test_an_idle_stream_expires_and_reports_it(
    store: StateStore, leaky: Callable[..., Any], metric: Callable[..., float]
) -> None:
    now = [T0]
    metrics = Metrics()
    engine = make_engine(
        leaky(), store, metrics=metrics, clock=lambda: now[0], state_ttl_s=100, expiry_grace_s=50
    )
    async with running(engine):
        await engine.submit(TENANT, "m", [Event("s", T0, (1.0, 1.0), "a")])
        info = await engine.stream_info(TENANT, "m", "s")
        assert info is not None
        assert info.expires_at == T0 + 100
        now[0] += 101
        assert await engine.stream_info(TENANT, "m", "s") is None  # expired is gone for users
        assert await engine.export_state(TENANT, "m", "s") is None
        with pytest.raises(StreamNotFound):
            await engine.predict_at(TENANT, "m", "s", T0 + 200)
        await engine.submit(TENANT, "m", [Event("gone", T0, (1.0, 1.0))])
        now[0] += 101
        assert await engine.delete_stream(TENANT, "m", "gone") is False  # expired: none to forget
        assert await store.load_many([state_key(TENANT, "m", "gone")]) == [None]  # but removed
        (p,) = predictions(await engine.submit(TENANT, "m", [Event("s", T0 - 5, (1.0, 1.0), "a")]))
    # the stream restarts: older time and a once-seen id are fine, count starts again
    assert (p.reset, p.count, p.duplicate, p.dt) == ("expired", 1, False, 0.5)
    assert metric(metrics, "liquid_stream_resets_total", reason="expired") == 1


async def test_once_the_key_itself_expired_the_next_event_is_a_first_event(
    store: StateStore, leaky: Callable[..., Any]
) -> None:
    async with running(
        make_engine(leaky(), store, state_ttl_s=0.05, expiry_grace_s=0.05)
    ) as engine:
        await engine.submit(TENANT, "m", [Event("s", T0, (1.0, 1.0))])
        assert (await store.load_many([state_key(TENANT, "m", "s")]))[0] is not None
        await asyncio.sleep(0.2)
        assert await store.load_many([state_key(TENANT, "m", "s")]) == [None]
        (p,) = predictions(await engine.submit(TENANT, "m", [Event("s", T0 + 1, (1.0, 1.0))]))
    assert (p.reset, p.count) == ("first_event", 1)


async def test_a_model_change_restarts_the_stream(
    store: StateStore, leaky: Callable[..., Any], metric: Callable[..., float]
) -> None:
    old, new = leaky(version="v1"), leaky(version="v2", seed=9)
    async with running(make_engine(old, store)) as engine:
        await engine.submit(TENANT, "m", events_of("s", irregular_stream(3, random.Random(5))))
    metrics = Metrics()
    async with running(make_engine(new, store, metrics=metrics)) as engine:
        info = await engine.stream_info(TENANT, "m", "s")
        assert info is not None
        assert (info.version, info.count) == ("v1", 3)  # visible until its next event
        with pytest.raises(InvalidState, match="v1"):
            await engine.predict_at(TENANT, "m", "s", T0 + 1e6)
        (p,) = predictions(await engine.submit(TENANT, "m", [Event("s", T0 - 100, (1.0, 2.0))]))
        assert (p.reset, p.count, p.version, p.dt) == ("model_change", 1, "v2", 0.5)
        assert_replayed(p.y, offline(new, [(T0 - 100, (1.0, 2.0))], 0.5)[0][0], 1)
        info = await engine.stream_info(TENANT, "m", "s")
        assert info is not None
        assert (info.version, info.count) == ("v2", 1)
    assert metric(metrics, "liquid_stream_resets_total", reason="model_change") == 1


# --- concurrent writers -------------------------------------------------------------------------


async def test_two_engines_interleaving_lose_no_update(
    make_store: Callable[[], StateStore], leaky: Callable[..., Any], metric: Callable[..., float]
) -> None:
    """Two engines (two store clients of one Redis, or one shared in-process store) receive
    the events of the same streams concurrently. Whatever order they commit in, the applied
    events of each stream, ordered by their count, must be 1..N with increasing times, and the
    stored state must equal stepping exactly that sequence offline."""
    model = leaky()
    m_a, m_b = Metrics(), Metrics()
    engine_a = make_engine(model, make_store(), metrics=m_a, max_delay_s=0.002)
    engine_b = make_engine(model, make_store(), metrics=m_b, max_delay_s=0.002)
    rng = random.Random(6)
    streams = {f"s{i}": irregular_stream(40, rng) for i in range(3)}
    async with running(engine_a), running(engine_b):
        jobs = []
        for s, evs in streams.items():
            for i, (t, x) in enumerate(evs):
                engine = engine_a if rng.random() < 0.5 else engine_b
                jobs.append((s, t, x, engine.submit(TENANT, "m", [Event(s, t, x, f"{s}-{i}")])))
        results = await asyncio.gather(*(job for *_, job in jobs))
        for s in streams:
            applied = sorted(
                (
                    (r.count, t, x, r)
                    for (s2, t, x, _), (r,) in zip(jobs, results, strict=True)
                    if s2 == s and isinstance(r, Prediction)
                ),
                key=lambda item: item[0],
            )
            counts = [c for c, *_ in applied]
            assert counts == list(range(1, len(applied) + 1))  # none lost, none twice
            times = [t for _, t, _, _ in applied]
            assert times == sorted(times)
            ys, h = offline(model, [(t, x) for _, t, x, _ in applied], 0.5)
            assert_replayed([r.y for *_, r in applied], ys, len(applied))
            snap = await engine_a.export_state(TENANT, "m", s)
            assert snap is not None
            assert snap.count == len(applied)
            assert_replayed(snap.h, h[0].numpy(), len(applied))
            rejected = [
                r
                for (s2, *_), (r,) in zip(jobs, results, strict=True)
                if s2 == s and isinstance(r, Rejection)
            ]
            assert len(applied) + len(rejected) == 40


class RacingStore:
    """A real store with a hook that runs just before each CAS round trip (to let another
    writer in between this writer's load and its write)."""

    def __init__(self, inner: StateStore, before_save: Callable[[], Awaitable[None]]) -> None:
        self.inner = inner
        self.before_save = before_save
        self.saves = 0

    async def load_many(self, keys: Sequence[str]) -> list[Versioned | None]:
        return await self.inner.load_many(keys)

    async def cas_many(self, writes: Sequence[CasWrite]) -> list[bool]:
        self.saves += 1
        await self.before_save()
        return await self.inner.cas_many(writes)

    async def delete(self, key: str) -> bool:
        return await self.inner.delete(key)

    async def ping(self) -> bool:
        return await self.inner.ping()

    async def close(self) -> None:
        await self.inner.close()


async def test_a_lost_race_reloads_and_recomputes_only_that_stream(
    make_store: Callable[[], StateStore], leaky: Callable[..., Any], metric: Callable[..., float]
) -> None:
    model_a, model_b = leaky(), leaky()
    other = make_engine(model_b, make_store())
    interfered = False

    async def interfere() -> None:
        nonlocal interfered
        if not interfered:
            interfered = True
            await other.submit(TENANT, "m", [Event("s1", T0 + 5, (0.5, -0.5))])

    metrics = Metrics()
    racing = RacingStore(make_store(), interfere)
    engine = make_engine(model_a, racing, metrics=metrics, max_delay_s=0.05)
    async with running(other), running(engine):
        res = predictions(
            await engine.submit(
                TENANT, "m", [Event("s1", T0 + 10, (1.0, 1.0)), Event("s2", T0 + 10, (1.0, 1.0))]
            )
        )
        assert model_a.calls == [(2, 1), (1, 1)]  # the retry recomputed s1 only
        assert racing.saves == 2
        assert metric(metrics, "liquid_state_conflicts_total") == 1
        # s1 now continues the other writer's state: its event came second
        assert (res[0].count, res[0].reset, res[0].dt) == (2, None, 5.0)
        ys, h = offline(model_a, [(T0 + 5, (0.5, -0.5)), (T0 + 10, (1.0, 1.0))], 0.5)
        assert_replayed(res[0].y, ys[1], 2)
        snap = await engine.export_state(TENANT, "m", "s1")
        assert snap is not None
        assert_replayed(snap.h, h[0].numpy(), 2)
        assert (res[1].count, res[1].reset) == (1, "first_event")


async def test_endless_conflicts_give_up_with_state_conflict(
    make_store: Callable[[], StateStore], leaky: Callable[..., Any], metric: Callable[..., float]
) -> None:
    inner = make_store()
    key = state_key(TENANT, "m", "s")

    payload = encode_record(
        StreamRecord(
            "m", "v1", floats_to_f32([0.0] * 3), floats_to_f32([0.0] * 2), T0 - 1, 1, T0, T0
        )
    )

    async def bump() -> None:  # another writer always gets in first
        (cur,) = await inner.load_many([key])
        await inner.cas_many([CasWrite(key, 0 if cur is None else cur.version, payload, 60)])

    metrics = Metrics()
    engine = make_engine(
        leaky(),
        RacingStore(inner, bump),
        metrics=metrics,
        max_cas_retries=2,
    )
    async with running(engine):
        with pytest.raises(StateConflict):
            await engine.submit(TENANT, "m", [Event("s", T0, (1.0, 1.0))])
    assert metric(metrics, "liquid_state_conflicts_total") == 3


# --- lifecycle ----------------------------------------------------------------------------------


async def test_stop_drains_everything_acknowledged(
    store: StateStore, leaky: Callable[..., Any]
) -> None:
    engine = make_engine(leaky(), store, max_batch=4, max_delay_s=0.01, max_queue=64)
    await engine.start()
    tasks = [
        asyncio.create_task(engine.submit(TENANT, "m", [Event(f"s{i % 5}", T0 + i, (1.0, 0.0))]))
        for i in range(40)
    ]
    await asyncio.sleep(0)  # every submit is queued
    await engine.stop()
    results = [r for rs in await asyncio.wait_for(asyncio.gather(*tasks), 1.0) for r in rs]
    assert len(predictions(results)) == 40
    for i in range(5):
        (stored,) = await store.load_many([state_key(TENANT, "m", f"s{i}")])
        assert stored is not None  # committed
    with pytest.raises(EngineStopped):
        await engine.submit(TENANT, "m", [Event("s0", T0 + 100, (1.0, 0.0))])
    await engine.stop()  # idempotent
    with pytest.raises(EngineStopped):
        await engine.start()


async def test_submit_before_start_and_bad_events(
    store: StateStore, leaky: Callable[..., Any]
) -> None:
    engine = make_engine(leaky(), store)
    with pytest.raises(EngineStopped):
        await engine.submit(TENANT, "m", [Event("s", T0, (1.0, 1.0))])
    async with running(engine):
        with pytest.raises(UnknownModel, match="served"):
            await engine.submit(TENANT, "nope", [Event("s", T0, (1.0, 1.0))])
        with pytest.raises(InvalidEvent, match="features"):
            await engine.submit(TENANT, "m", [Event("s", T0, (1.0,))])
        with pytest.raises(InvalidEvent, match="finite"):
            await engine.submit(TENANT, "m", [Event("s", T0, (1.0, math.nan))])
        with pytest.raises(InvalidEvent, match="finite"):
            await engine.submit(TENANT, "m", [Event("s", math.inf, (1.0, 1.0))])
        assert await engine.submit(TENANT, "m", []) == []
        assert await engine.stream_info(TENANT, "m", "s") is None  # nothing was applied


def test_construction_is_validated(leaky: Callable[..., Any]) -> None:

    with pytest.raises(ValueError, match="max_batch must be greater than 0"):
        EngineConfig(max_batch=0)
    with pytest.raises(ValueError, match="max_gap_s"):
        EngineConfig(max_gap_s=0)
    with pytest.raises(ValueError, match="first_event_dt_s"):
        EngineConfig(first_event_dt_s=-1)
    with pytest.raises(ValueError, match="max_queue"):
        EngineConfig(max_batch=10, max_queue=5)
    with pytest.raises(ValueError, match="at least one model"):
        Engine({}, MemoryStore(), MemoryLiveBus(), Metrics(), EngineConfig())
    with pytest.raises(ValueError, match="no version"):
        make_engine(leaky(version=""), MemoryStore())
    assert isinstance(leaky(), ServableModel)


# --- live feed ----------------------------------------------------------------------------------


async def test_committed_predictions_are_published(
    store: StateStore, leaky: Callable[..., Any]
) -> None:
    bus = MemoryLiveBus()
    sub = bus.subscribe(live_channel(TENANT, "s"))
    other = bus.subscribe(live_channel("other-tenant", "s"))
    async with running(make_engine(leaky(), store, live=bus)) as engine:
        res = await engine.submit(
            TENANT,
            "m",
            [
                Event("s", T0, (1.0, 2.0), "a"),
                Event("s", T0 + 1.5, (3.0, 4.0), "b"),
                Event("s", T0, (0.0, 0.0), "a"),
                Event("s", T0 + 1, (0.0, 0.0), "late"),
            ],
        )
        first = json.loads(await asyncio.wait_for(sub.get(), 1.0))
        second = json.loads(await asyncio.wait_for(sub.get(), 1.0))
    assert len(sub) == 0  # duplicates and rejections are not new predictions
    assert len(other) == 0
    p = res[1]
    assert isinstance(p, Prediction)
    assert second == {
        "type": "prediction",
        "model": "m",
        "prediction": {
            "stream_id": "s",
            "t": T0 + 1.5,
            "time": rfc3339(T0 + 1.5),
            "dt": 1.5,
            "outputs": {"y0": p.y[0], "y1": p.y[1]},
            "model": "m",
            "version": "v1",
            "duplicate": False,
            "reset": None,
            "id": "b",
            "count": 2,
            "x": [3.0, 4.0],
        },
    }
    first = first["prediction"]
    assert (first["reset"], first["id"], first["count"]) == ("first_event", "a", 1)


class _RecordingBus(MemoryLiveBus):
    def __init__(self) -> None:
        super().__init__()
        self.published: list[str] = []

    async def publish_many(self, messages: Sequence[tuple[str, str]]) -> None:
        self.published += [channel for channel, _ in messages]
        await super().publish_many(messages)


async def test_predictions_nobody_listens_to_are_not_encoded_or_published(
    store: StateStore, leaky: Callable[..., Any]
) -> None:
    bus = _RecordingBus()
    sub = bus.subscribe(live_channel(TENANT, "watched"))
    async with running(make_engine(leaky(), store, live=bus)) as engine:
        events = [Event(sid, T0 + k, (1.0, 2.0)) for k in range(3) for sid in ("watched", "idle")]
        await engine.submit(TENANT, "m", events)
        got = [json.loads(await asyncio.wait_for(sub.get(), 1.0)) for _ in range(3)]
    assert [m["prediction"]["count"] for m in got] == [1, 2, 3]
    assert bus.published == [live_channel(TENANT, "watched")] * 3


@pytest.mark.integration
async def test_predictions_reach_live_subscribers_of_another_replica(
    redis_url: str, leaky: Callable[..., Any]
) -> None:
    from service.store import RedisStore

    bus_engine, bus_ws = RedisLiveBus(redis_url), RedisLiveBus(redis_url)
    store = RedisStore(redis_url)
    try:
        sub = bus_ws.subscribe(live_channel(TENANT, "s"))
        await asyncio.wait_for(sub.ready(), 2.0)
        async with running(make_engine(leaky(), store, live=bus_engine)) as engine:
            (p,) = predictions(await engine.submit(TENANT, "m", [Event("s", T0, (1.0, 2.0))]))
            msg = json.loads(await asyncio.wait_for(sub.get(), 2.0))
        assert msg["prediction"]["outputs"] == {"y0": p.y[0], "y1": p.y[1]}
        assert msg["prediction"]["t"] == T0
    finally:
        await bus_engine.close()
        await bus_ws.close()
        await store.close()


# --- reads and admin ----------------------------------------------------------------------------


async def test_predict_at_holds_the_last_input_and_changes_nothing(
    store: StateStore, leaky: Callable[..., Any]
) -> None:
    model = leaky()
    evs = irregular_stream(4, random.Random(7))
    async with running(make_engine(model, store)) as engine:
        await engine.submit(TENANT, "m", events_of("s", evs))
        before = await engine.export_state(TENANT, "m", "s")
        last_t, x_last = evs[-1]
        p = await engine.predict_at(TENANT, "m", "s", last_t + 3.25)
        _, h = offline(model, evs, 0.5)
        with torch.inference_mode():
            y, _ = model.step(torch.tensor([x_last], dtype=torch.float32), torch.tensor([3.25]), h)
        assert_replayed(p.y, y[0].numpy(), len(evs) + 1)
        assert (p.t, p.dt, p.count, p.duplicate, p.reset, p.event_id) == (
            last_t + 3.25,
            3.25,
            4,
            False,
            None,
            None,
        )
        same = await engine.predict_at(TENANT, "m", "s", last_t)  # at the last event: Δt = 0
        assert same.dt == 0.0
        assert await engine.export_state(TENANT, "m", "s") == before
        with pytest.raises(InvalidTime, match="before"):
            await engine.predict_at(TENANT, "m", "s", last_t - 0.001)
        with pytest.raises(InvalidTime):
            await engine.predict_at(TENANT, "m", "s", math.nan)
        with pytest.raises(StreamNotFound):
            await engine.predict_at(TENANT, "m", "nobody", last_t)
        with pytest.raises(UnknownModel):
            await engine.predict_at(TENANT, "x", "s", last_t)


async def test_stream_info_and_delete(store: StateStore, leaky: Callable[..., Any]) -> None:
    now = [T0 + 1000]
    async with running(
        make_engine(leaky(), store, clock=lambda: now[0], state_ttl_s=600)
    ) as engine:
        assert await engine.stream_info(TENANT, "m", "s") is None
        await engine.submit(TENANT, "m", [Event("s", T0, (1.0, 1.0))])
        now[0] += 10
        await engine.submit(TENANT, "m", [Event("s", T0 + 2, (1.0, 1.0))])
        info = await engine.stream_info(TENANT, "m", "s")
        assert info is not None
        assert (info.stream_id, info.model, info.version, info.last_t, info.count) == (
            "s",
            "m",
            "v1",
            T0 + 2,
            2,
        )
        assert (info.created, info.updated, info.expires_at) == (T0 + 1000, T0 + 1010, T0 + 1610)
        # tenants and models are separate namespaces
        assert await engine.stream_info("someone-else", "m", "s") is None
        assert await engine.delete_stream(TENANT, "m", "s") is True
        assert await engine.delete_stream(TENANT, "m", "s") is False
        assert await engine.stream_info(TENANT, "m", "s") is None
        (p,) = predictions(await engine.submit(TENANT, "m", [Event("s", T0 + 1, (1.0, 1.0))]))
        assert (p.reset, p.count) == ("first_event", 1)


async def test_export_import_round_trip(store: StateStore, leaky: Callable[..., Any]) -> None:
    evs = irregular_stream(5, random.Random(8))
    more = [(evs[-1][0] + 2.0, (0.3, -0.7))]
    async with running(make_engine(leaky(), store)) as engine:
        first = predictions(await engine.submit(TENANT, "m", events_of("a", evs, ids=True)))
        snap = await engine.export_state(TENANT, "m", "a")
        assert snap is not None
        assert snap.recent_ids == tuple(f"a-{i}" for i in range(5))
        assert (snap.version, snap.count, snap.model) == ("v1", 5, "m")
        info = await engine.import_state(TENANT, "m", "b", snap)
        assert (info.count, info.last_t, info.version) == (5, evs[-1][0], "v1")
        exported_b = await engine.export_state(TENANT, "m", "b")
        assert exported_b is not None
        assert (exported_b.h, exported_b.x_last, exported_b.recent) == (
            snap.h,
            snap.x_last,
            snap.recent,
        )
        # the handed-off stream continues exactly as the original would
        (pa,) = predictions(await engine.submit(TENANT, "m", events_of("a", more)))
        (pb,) = predictions(await engine.submit(TENANT, "m", events_of("b", more)))
        assert (pa.y, pa.dt, pa.count) == (pb.y, pb.dt, pb.count)
        # and answers retries of events applied before the handoff
        (dup,) = predictions(
            await engine.submit(TENANT, "m", [Event("b", evs[1][0], evs[1][1], "a-1")])
        )
        assert dup.duplicate
        assert dup.y == first[1].y
        # import overwrites an existing stream
        await engine.import_state(TENANT, "m", "a", snap)
        exported_a = await engine.export_state(TENANT, "m", "a")
        assert exported_a is not None
        assert exported_a.count == 5


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"version": "v0"}, "version"),
        ({"h": (0.0, 0.0)}, "h has 2 values"),
        ({"x_last": (0.0,)}, "x_last"),
        ({"h": (0.0, math.nan, 0.0)}, "finite"),
        ({"h": (0.0, 1e39, 0.0)}, "finite"),  # overflows float32
        ({"last_t": math.inf}, "last_t"),
        ({"count": -1}, "count"),
    ],
)
async def test_import_validation(
    store: StateStore, leaky: Callable[..., Any], change: dict[str, Any], match: str
) -> None:
    good = StateSnapshot(h=(0.1, 0.2, 0.3), x_last=(1.0, 2.0), last_t=T0, count=3, version="v1")
    async with running(make_engine(leaky(), store)) as engine:
        await engine.import_state(TENANT, "m", "ok", good)
        with pytest.raises(InvalidState, match=match):
            await engine.import_state(TENANT, "m", "s", dataclasses.replace(good, **change))
        assert await engine.stream_info(TENANT, "m", "s") is None


async def test_an_unreadable_record_is_reported_not_overwritten(
    store: StateStore, leaky: Callable[..., Any]
) -> None:
    key = state_key(TENANT, "m", "s")
    await store.cas_many([CasWrite(key, 0, b"LQSR\x09\x00garbage", 60)])
    async with running(make_engine(leaky(), store)) as engine:
        with pytest.raises(StateUnreadable, match="format version 9"):
            await engine.submit(TENANT, "m", [Event("s", T0, (1.0, 1.0))])
        with pytest.raises(StateUnreadable):
            await engine.stream_info(TENANT, "m", "s")
        assert (await store.load_many([key]))[0] == Versioned(1, b"LQSR\x09\x00garbage")
        assert await engine.delete_stream(TENANT, "m", "s") is True
        (p,) = predictions(await engine.submit(TENANT, "m", [Event("s", T0, (1.0, 1.0))]))
        assert p.reset == "first_event"


async def test_metrics_of_a_batch(
    store: StateStore, leaky: Callable[..., Any], metric: Callable[..., float]
) -> None:
    metrics = Metrics()
    # the active window outlasts a slow (cluster, loaded machine) submit and delete
    engine = make_engine(leaky(), store, metrics=metrics, active_window_s=2.0, max_delay_s=0.02)
    async with running(engine):
        await engine.submit(
            TENANT,
            "m",
            [
                Event("a", T0, (1.0, 1.0), received_at=T0 + 2.5),
                Event("a", T0 + 1, (1.0, 1.0)),
                Event("b", T0, (1.0, 1.0)),
            ],
        )
        await engine.delete_stream(TENANT, "m", "b")
        assert metric(metrics, "liquid_active_streams") == 2
        assert metric(metrics, "liquid_batch_size_count") == 1
        assert metric(metrics, "liquid_batch_size_sum") == 3
        assert metric(metrics, "liquid_queue_wait_seconds_count") == 3
        assert metric(metrics, "liquid_batch_compute_seconds_count") == 1
        assert metric(metrics, "liquid_state_store_seconds_count", op="load") == 2  # + delete
        assert metric(metrics, "liquid_state_store_seconds_count", op="save") == 1
        assert metric(metrics, "liquid_state_store_seconds_count", op="delete") == 1
        assert metric(metrics, "liquid_event_dt_seconds_count") == 3
        assert metric(metrics, "liquid_event_dt_seconds_sum") == 0.5 + 1.0 + 0.5
        assert metric(metrics, "liquid_event_lag_seconds_count") == 3
        assert metric(metrics, "liquid_event_lag_seconds_bucket", le="5.0") >= 1
        await asyncio.sleep(2.2)
        assert engine.active_stream_count() == 0  # pruned after the active window
        assert metric(metrics, "liquid_active_streams") == 0


async def test_several_models_in_one_batch(store: StateStore, leaky: Callable[..., Any]) -> None:
    small, big = leaky(), leaky(name="big", input_size=4, state_size=6, output_size=1, seed=3)
    engine = make_engine({"small": small, "big": big}, store, max_delay_s=0.05)
    async with running(engine):
        a, b = await asyncio.gather(
            engine.submit(TENANT, "small", [Event("s", T0, (1.0, 2.0))]),
            engine.submit(TENANT, "big", [Event("s", T0, (1.0, 2.0, 3.0, 4.0))]),
        )
    assert small.calls == [(1, 1)]
    assert big.calls == [(1, 1)]
    assert predictions(a)[0].y == offline(small, [(T0, (1.0, 2.0))], 0.5)[0][0]
    assert predictions(b)[0].y == offline(big, [(T0, (1.0, 2.0, 3.0, 4.0))], 0.5)[0][0]
    assert predictions(b)[0].model == "big"


# --- the real model -----------------------------------------------------------------------------


def real_model(kind: str) -> Any:
    pytest.importorskip("liquidcore.model")
    pytest.importorskip("liquidcore.cells.ltc")  # tests.model_factory needs every cell
    from tests.model_factory import make_model

    model = make_model(kind, seed=1)
    model.version = f"test-{kind}"
    return model


@pytest.mark.parametrize("kind", ["cfc", "ltc", "mixed_cfc"])
async def test_real_liquid_model_equals_offline_stepping(store: StateStore, kind: str) -> None:
    model = real_model(kind)
    rng = random.Random(10)
    streams = {f"d{i}": irregular_stream(7, rng, inputs=model.input_size) for i in range(4)}
    async with running(make_engine(model, store, max_gap_s=40.0)) as engine:
        got: dict[str, list[Prediction]] = {s: [] for s in streams}
        for lo, hi in ((0, 3), (3, 7)):
            rounds = await asyncio.gather(
                *(engine.submit(TENANT, "m", events_of(s, ev[lo:hi])) for s, ev in streams.items())
            )
            for s, res in zip(streams, rounds, strict=True):
                got[s].extend(predictions(res))
        for s, evs in streams.items():
            # replay offline with the same resets the engine reports (gaps > 40 s)
            ys: list[tuple[float, ...]] = []
            start = 0
            for i in range(1, len(evs) + 1):
                if i == len(evs) or evs[i][0] - evs[i - 1][0] > 40.0:
                    ys += offline(model, evs[start:i], model.default_dt)[0]
                    start = i
            assert [p.reset is not None for p in got[s]] == [
                i == 0 or evs[i][0] - evs[i - 1][0] > 40.0 for i in range(len(evs))
            ]
            assert_replayed([p.y for p in got[s]], ys, len(evs))


def replay_streams(model: Any, n_streams: int, n_events: int, seed: int) -> dict[str, list]:
    """Irregular streams with equal timestamps, ids on every event."""
    rng = random.Random(seed)
    return {
        f"r{i}": irregular_stream(n_events, rng, inputs=model.input_size) for i in range(n_streams)
    }


async def replay_through(
    model: Any, streams: dict[str, list], composition: str, seed: int = 0
) -> dict[str, tuple[list[Prediction], StateSnapshot]]:
    """Serve ``streams`` through one batch composition; each stream's answers and final state.

    ``b1``/``b7``/``b64``: every stream's k-th event in round k, batches of at most 1, 7 or 64
    events. ``shuffled``: the streams' events merged in a random order (each stream's own order
    kept) and submitted in chunks of random size, so batches mix streams and carry several
    events of one stream (the padded sequence path)."""
    from service.store import MemoryStore

    rng = random.Random(seed)
    max_batch = {"b1": 1, "b7": 7, "b64": 64, "shuffled": 64}[composition]
    engine = make_engine(model, MemoryStore(), max_batch=max_batch, max_queue=4096)
    got: dict[str, list[Prediction]] = {s: [] for s in streams}
    async with running(engine):
        if composition == "shuffled":
            cursors = dict.fromkeys(streams, 0)
            order = []
            while cursors:
                s = rng.choice(sorted(cursors))
                order.append((s, cursors[s]))
                cursors[s] += 1
                if cursors[s] == len(streams[s]):
                    del cursors[s]
            while order:
                size = rng.randint(1, 40)
                chunk, order = order[:size], order[size:]
                evs = [Event(s, *streams[s][i], event_id=f"{s}-{i}") for s, i in chunk]
                for (s, _), r in zip(chunk, await engine.submit(TENANT, "m", evs), strict=True):
                    got[s].append(r)
        else:
            n = len(next(iter(streams.values())))
            for k in range(n):
                rounds = await asyncio.gather(
                    *(
                        engine.submit(TENANT, "m", [Event(s, *evs[k], event_id=f"{s}-{k}")])
                        for s, evs in streams.items()
                    )
                )
                for s, res in zip(streams, rounds, strict=True):
                    got[s].extend(res)
        out = {}
        for s in streams:
            snap = await engine.export_state(TENANT, "m", s)
            assert snap is not None
            out[s] = (predictions(got[s]), snap)
    return out


@pytest.mark.parametrize("kind", ["cfc", "ltc"])
async def test_a_replay_through_any_batch_composition_meets_the_contract(kind: str) -> None:
    """The numerics contract (docs/numerics.md): the same events served through batches of 1,
    7 and 64 and a shuffled interleaving give exactly the same decisions (Δt, counts, resets,
    ids, times) and states and outputs within the replay tolerance of stepping each stream
    alone, and of each other. A model with a realistic backbone width is used, since tiny
    GEMMs hide the blocking differences."""
    from liquidcore.cells.cfc import CfCCell
    from liquidcore.cells.ltc import LTCCell
    from liquidcore.heads import ReadoutHead
    from liquidcore.model import LiquidModel
    from liquidcore.wirings import AutoNCP

    torch.manual_seed(3)
    cell: Any = (
        CfCCell(6, 48, backbone_units=128)
        if kind == "cfc"
        else LTCCell(AutoNCP(24, 3, seed=2), in_features=6)
    )
    model = LiquidModel(cell, ReadoutHead(cell.output_size, 3), default_dt=0.5).eval()
    model.version = f"contract-{kind}"
    n_events = 16
    streams = replay_streams(model, 16, n_events, seed=12)
    served = {
        how: await replay_through(model, streams, how, seed=4)
        for how in ("b1", "b7", "b64", "shuffled")
    }
    for s, evs in streams.items():
        ys, h = offline(model, evs, model.default_dt)
        ref_preds, ref_snap = served["b1"][s]
        for how, by_stream in served.items():
            preds, snap = by_stream[s]
            decided = [(p.t, p.dt, p.count, p.reset, p.duplicate, p.event_id) for p in preds]
            assert decided == [
                (p.t, p.dt, p.count, p.reset, p.duplicate, p.event_id) for p in ref_preds
            ], how  # decisions are plain float64 CPU code: exact
            assert (snap.count, snap.last_t, snap.x_last) == (
                ref_snap.count,
                ref_snap.last_t,
                ref_snap.x_last,
            )
            assert_replayed([p.y for p in preds], ys, n_events)
            assert_replayed(snap.h, h[0].numpy(), n_events)
            assert_replayed(snap.h, ref_snap.h, n_events)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
async def test_on_cuda_equals_offline_stepping_on_cpu(leaky: Callable[..., Any]) -> None:
    from service.store import MemoryStore

    model = real_model("cfc")
    cpu_ref = real_model("cfc")
    evs = irregular_stream(6, random.Random(11), inputs=model.input_size)
    async with running(make_engine(model, MemoryStore(), device="cuda")) as engine:
        res = predictions(await engine.submit(TENANT, "m", events_of("s", evs)))
        p = await engine.predict_at(TENANT, "m", "s", evs[-1][0] + 1.0)
    ys, _ = offline(cpu_ref, evs, cpu_ref.default_dt)
    for got, want in zip(res, ys, strict=True):
        assert close(got.y, want, tol=1e-5)
    assert all(math.isfinite(v) for v in p.y)


# --- batches in flight --------------------------------------------------------------------------


class GatedStore(MemoryStore):
    """A store whose loads wait at a gate, counting how many are in progress at once."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.loading = 0
        self.most_at_once = 0

    async def load_many(self, keys: Sequence[str]) -> list[Versioned | None]:
        self.loading += 1
        self.most_at_once = max(self.most_at_once, self.loading)
        try:
            await self.gate.wait()
            return await super().load_many(keys)
        finally:
            self.loading -= 1


async def _two_batches(store: GatedStore, engine: Engine, streams: tuple[str, str]) -> list[Any]:
    first = asyncio.ensure_future(engine.submit(TENANT, "m", [Event(streams[0], T0, (1.0, 2.0))]))
    await asyncio.sleep(0.05)  # the first batch is formed and waits at the gate
    second = asyncio.ensure_future(
        engine.submit(TENANT, "m", [Event(streams[1], T0 + 1, (3.0, 4.0))])
    )
    await asyncio.sleep(0.05)
    store.gate.set()
    return [*(await first), *(await second)]


async def test_batches_of_different_streams_overlap(leaky: Callable[..., Any]) -> None:
    store = GatedStore()
    async with running(make_engine(leaky(), store, max_batch=1)) as engine:
        results = await _two_batches(store, engine, ("a", "b"))
    assert store.most_at_once == 2
    assert [p.count for p in predictions(results)] == [1, 1]


async def test_batches_sharing_a_stream_never_overlap(leaky: Callable[..., Any]) -> None:
    store = GatedStore()
    async with running(make_engine(leaky(), store, max_batch=1)) as engine:
        results = await _two_batches(store, engine, ("a", "a"))
    assert store.most_at_once == 1
    assert [(p.count, p.t) for p in predictions(results)] == [(1, T0), (2, T0 + 1)]


async def test_one_batch_in_flight_when_configured(leaky: Callable[..., Any]) -> None:
    store = GatedStore()
    engine = make_engine(leaky(), store, max_batch=1, max_inflight_batches=1)
    async with running(engine):
        await _two_batches(store, engine, ("a", "b"))
    assert store.most_at_once == 1
