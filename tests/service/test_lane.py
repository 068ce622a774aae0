"""The one-event-per-stream lane (service.engine.lane) decides, answers and stores what the
per-stream path (its reference, ``plan_stream``/``build_record``) does.

Two engines, lane on and off, get the same random traffic: streams with one and several events
per batch, repeated ids inside and beyond the dedupe window, events out of order and at equal
times, gaps, expiry, a record of another model version, a record in the old format and events
that overflow the state. Decisions (kind, Δt, reset, count, ids, times) must be equal exactly;
outputs and states within the numerics contract (the two engines put the same streams in
different rows of one batched call, and rows may round differently: docs/numerics.md).
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest

from service.engine import Event, Prediction, Rejection, core
from service.engine.lane_streams import take_lane
from service.engine.results import EventResult
from service.store import MemoryStore
from service.store.keys import state_key
from service.store.recent import RecentEntry, RecentWindow
from service.store.record import StreamRecord, decode_record, encode_record, floats_to_f32
from service.store.record_columns import RecordLayout, read_columns, write_rows
from tests.service.test_codec import encode_v1
from tests.service.test_engine import TENANT, make_engine, running
from tests.service.test_poison import POISON, FragileModel

pytestmark = pytest.mark.anyio

T0 = 1_767_225_600.0
TOL = 1e-5  # the same streams in other rows of one call (docs/numerics.md: 3e-5·√n + 1e-5·|v|)


def _same_result(a: EventResult, b: EventResult) -> None:
    assert type(a) is type(b)
    if isinstance(a, Rejection):
        assert a == b
        return
    assert isinstance(b, Prediction)
    assert (a.stream_id, a.t, a.dt, a.model, a.version, a.duplicate, a.reset) == (
        b.stream_id, b.t, b.dt, b.model, b.version, b.duplicate, b.reset,
    )  # fmt: skip
    assert (a.event_id, a.count) == (b.event_id, b.count)
    assert all(isinstance(v, float) for v in (a.t, a.dt, *a.y))  # Python floats, not numpy's
    np.testing.assert_allclose(a.y, b.y, rtol=TOL, atol=TOL)


def _same_record(a: StreamRecord, b: StreamRecord) -> None:
    assert (a.model, a.version, a.x, a.last_t, a.count, a.created, a.updated) == (
        b.model, b.version, b.x, b.last_t, b.count, b.created, b.updated,
    )  # fmt: skip
    np.testing.assert_allclose(
        np.frombuffer(a.h, "<f4"), np.frombuffer(b.h, "<f4"), rtol=TOL, atol=TOL
    )
    assert a.recent.event_ids() == b.recent.event_ids()
    for ea, eb in zip(a.recent, b.recent, strict=True):
        assert (ea.t, ea.dt, ea.reset, ea.count) == (eb.t, eb.dt, eb.reset, eb.count)
        np.testing.assert_allclose(ea.y, eb.y, rtol=TOL, atol=TOL)


def _old_record(model: FragileModel, version: str) -> StreamRecord:
    entry = RecentEntry("old-1", T0 - 1, 0.5, (0.25, -0.5), None, 3)
    return StreamRecord(
        model.name, version, floats_to_f32([0.1, 0.2, 0.3]), floats_to_f32([0.0, 0.0]),
        T0 - 1, 3, T0 - 100, T0 - 1, RecentWindow.of([entry]),
    )  # fmt: skip


@pytest.mark.parametrize("seed", range(8))
async def test_the_lane_answers_and_stores_what_the_per_stream_path_does(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    taken = []

    def counting_take_lane(*args: Any, **kw: Any) -> Any:
        lanes, rest, rest_loaded = take_lane(*args, **kw)
        taken.append(sum(len(lane.keys) for lane in lanes))
        return lanes, rest, rest_loaded

    monkeypatch.setattr(core, "take_lane", counting_take_lane)
    rng = random.Random(seed)
    window = rng.choice([0, 1, 3, 32])
    clock = [T0]
    models = [FragileModel(), FragileModel()]
    stores = [MemoryStore(), MemoryStore()]
    streams = [f"s{i}" for i in range(8)]
    # a record of another model version, and one in the old format, before any event
    for model, store in zip(models, stores, strict=True):
        other = encode_record(_old_record(model, "v0"))
        old = encode_v1(_old_record(model, model.version))
        for sid, payload in (("s0", other), ("s1", old)):
            await store.cas_many([_write(state_key(TENANT, "m", sid), payload)])
    engines = [
        make_engine(
            m,
            s,
            clock=lambda: clock[0],
            lane=lane,
            dedupe_window=window,
            max_gap_s=5.0,
            state_ttl_s=30.0,
        )
        for m, s, lane in zip(models, stores, (True, False), strict=True)
    ]
    last_t = dict.fromkeys(streams, T0)
    sent: dict[str, list[str]] = {s: [] for s in streams}
    kinds: set[str] = set()
    async with running(engines[0]), running(engines[1]):
        for batch in range(30):
            clock[0] += rng.choice([0.5, 1.0, 2.0, 40.0])  # 40 s: the records expire
            events = []
            for sid in rng.sample(streams, rng.randint(1, len(streams))):
                for _ in range(rng.choice([1, 1, 1, 2, 3])):
                    if sent[sid] and rng.random() < 0.2:
                        event_id: str | None = rng.choice(sent[sid])  # a retry, maybe too old
                    elif rng.random() < 0.3:
                        event_id = None
                    else:
                        event_id = f"{sid}-{batch}-{len(events)}"
                        sent[sid].append(event_id)
                    t = last_t[sid] + rng.choice([-1.0, 0.0, 0.5, 1.0, 8.0])
                    last_t[sid] = max(last_t[sid], t)
                    x0 = POISON if rng.random() < 0.04 else rng.uniform(-1, 1)
                    events.append(Event(sid, t, (x0, rng.uniform(-1, 1)), event_id))
            answers = [await e.submit(TENANT, "m", events) for e in engines]
            for a, b in zip(*answers, strict=True):
                _same_result(a, b)
                kinds.add(
                    a.code if isinstance(a, Rejection) else "dup" if a.duplicate else str(a.reset)
                )
    keys = [state_key(TENANT, "m", sid) for sid in streams]
    stored = [await s.load_many(keys) for s in stores]
    for a, b in zip(*stored, strict=True):
        assert (a is None) == (b is None)
        if a is not None and b is not None:
            _same_record(decode_record(a.payload), decode_record(b.payload))
    assert sum(taken) > 30  # the lane took streams (in the other engine it takes none)
    # the traffic covered every decision
    want = {"None", "first_event", "gap", "expired", "model_change", "out_of_order"}
    want |= {"non_finite_state"} | ({"dup"} if window else set())
    assert want <= kinds


def _write(key: str, payload: bytes) -> object:
    from service.store.base import CasWrite

    return CasWrite(key, 0, payload, 3600.0)


def test_record_columns_read_and_write_the_codec_bytes() -> None:
    rng = np.random.default_rng(3)
    layout = RecordLayout("demo", "sha256:" + "ab" * 32, 5, 3)
    records = []
    for i in range(40):
        entries = [
            RecentEntry(f"id-{i}-{j}", T0 + j, 0.5, (0.1 * j, 0.2), None if j else "gap", j + 1)
            for j in range(i % 4)
        ]
        records.append(
            StreamRecord(
                layout.model,
                layout.version,
                rng.standard_normal(5).astype("<f4").tobytes(),
                rng.standard_normal(3).astype("<f4").tobytes(),
                T0 + i,
                i,
                T0 - i,
                T0 + 2 * i,
                RecentWindow.of(entries),
            )
        )
    payloads = [encode_record(r) for r in records]
    cols = read_columns(payloads, layout)
    assert cols.ok.all()
    for b, r in enumerate(records):
        assert (cols.last_t[b], cols.created[b], cols.updated[b]) == (
            r.last_t,
            r.created,
            r.updated,
        )
        assert int(cols.count[b]) == r.count
        assert cols.h[b].tobytes() == r.h
        assert cols.windows[b] == r.recent if r.recent.n else cols.windows[b] is None
    x = np.stack([np.frombuffer(r.x, "<f4") for r in records])
    rows = write_rows(layout, cols.last_t, cols.created, 99.5, cols.count, cols.h, x, cols.windows)
    for row, r in zip(rows, records, strict=True):
        want = StreamRecord(
            r.model, r.version, r.h, r.x, r.last_t, r.count, r.created, 99.5, r.recent
        )
        assert row == encode_record(want)  # the same bytes as the codec writes


def test_record_columns_leave_what_they_do_not_read_whole_to_the_codec() -> None:
    layout = RecordLayout("demo", "v1", 2, 1)
    good = StreamRecord("demo", "v1", floats_to_f32([1, 2]), floats_to_f32([3]), T0, 1, T0, T0)
    payload = encode_record(good)
    flipped = bytearray(payload)
    flipped[60] ^= 1
    cases = {
        "good": payload,
        "empty": b"",
        "short": payload[:20],
        "bit flip": bytes(flipped),
        "other version": encode_record(StreamRecord("demo", "v2", good.h, good.x, T0, 1, T0, T0)),
        "other state size": encode_record(
            StreamRecord("demo", "v1", floats_to_f32([1, 2, 3]), good.x, T0, 1, T0, T0)
        ),
        "old format": encode_v1(good),
        "trailing byte": payload[:-4] + b"\x00" + payload[-4:],
    }
    ok = read_columns(list(cases.values()), layout).ok.tolist()
    assert dict(zip(cases, ok, strict=True)) == {name: name == "good" for name in cases}
