"""No poisoned states (issue 16, item 2): an event whose step would make a stream's state or
outputs non-finite is refused (``non_finite_state``), the stream keeps its previous state, and
the stream's other events in the same batch are answered as if the refused one had never been
sent. Engine level, on the in-process store and on Redis."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor

from service.engine import Event, InvalidEvent, Prediction, Rejection
from service.metrics import Metrics
from service.store import StateStore
from tests.service.conftest import LeakyModel
from tests.service.test_engine import TENANT, make_engine, offline, running

pytestmark = pytest.mark.anyio

T0 = 1_767_225_600.0
POISON = 1e3  # x[0] at or beyond this overflows the state of FragileModel
TOL = 1e-6  # engine (padded batch) vs offline stepping: the numerics contract's tolerance


class FragileModel(LeakyModel):
    """A leaky integrator whose state overflows to +inf when ``|x[0]| >= POISON`` (float32).

    ``readout="linear"``: the outputs go non-finite with the state. ``"saturating"``: the
    outputs are ``tanh`` of the state, finite even when the state is infinite, so only the
    final state shows which step went wrong."""

    def __init__(self, readout: str = "linear", **kw: Any) -> None:
        super().__init__(**kw)
        self.readout = readout

    def _step(self, x: Tensor, dt: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        _, h_new = super()._step(x, dt, h)
        h_new = h_new + (x[:, :1] * 1e17) ** 2 * 1e-34  # (1e20)^2 overflows float32
        if self.readout == "saturating":
            return torch.tanh(h_new[:, : self.output_size]), h_new
        return h_new @ self.V.T + self.c, h_new


def _x(v: float = 0.1) -> tuple[float, float]:
    return (v, -0.2)


def _want(model: FragileModel, pairs: Sequence[tuple[float, Sequence[float]]]) -> Any:
    return offline(model, pairs, model.default_dt)


def _finite(values: Sequence[float]) -> bool:
    return all(math.isfinite(v) for v in values)


@pytest.fixture(params=["linear", "saturating"])
def fragile(request: pytest.FixtureRequest) -> FragileModel:
    return FragileModel(str(request.param))


def test_the_model_really_overflows(fragile: FragileModel) -> None:
    with torch.inference_mode():
        h = fragile.init_state(1)
        _, h = fragile.step(torch.tensor([_x(POISON)]), torch.tensor([0.0]), h)
    assert not torch.isfinite(h).all()


async def test_a_poisoning_event_is_refused_and_the_state_kept(
    store: StateStore, fragile: FragileModel, metric: Callable[..., float]
) -> None:
    metrics = Metrics()
    engine = make_engine(fragile, store, metrics=metrics, max_abs_input=math.inf)
    async with running(engine):
        (first,) = await engine.submit(TENANT, "m", [Event("s", T0, _x(), "a")])
        before = await engine.export_state(TENANT, "m", "s")
        (bad,) = await engine.submit(TENANT, "m", [Event("s", T0, _x(POISON), "b")])
        assert isinstance(bad, Rejection)
        assert (bad.code, bad.event_id) == ("non_finite_state", "b")
        assert await engine.export_state(TENANT, "m", "s") == before
        assert metric(metrics, "liquid_events_total", outcome="rejected") == 1
        (later,) = await engine.submit(TENANT, "m", [Event("s", T0 + 2, _x(0.3))])
        assert isinstance(later, Prediction)
        assert later.count == 2
        assert later.dt == 2.0
        want, h = _want(fragile, [(T0, _x()), (T0 + 2, _x(0.3))])
        assert np.allclose(later.y, want[1], atol=TOL)
        after = await engine.export_state(TENANT, "m", "s")
        assert after is not None
        assert _finite(after.h)
        assert np.allclose(after.h, h[0].tolist(), atol=TOL)
        ahead = await engine.predict_at(TENANT, "m", "s", T0 + 50)
        assert _finite(ahead.y)
        # the refused id never entered the dedupe window: sent again finite, it applies
        (retry,) = await engine.submit(TENANT, "m", [Event("s", T0 + 3, _x(), "b")])
        assert isinstance(retry, Prediction)
        assert not retry.duplicate
        assert isinstance(first, Prediction)


async def test_the_batch_is_answered_as_if_the_refused_event_was_never_sent(
    store: StateStore, fragile: FragileModel
) -> None:
    engine = make_engine(fragile, store, max_abs_input=math.inf, max_delay_s=0.05)
    s1 = [
        Event("s1", T0, _x(0.1), "a"),
        Event("s1", T0 + 1, _x(0.2), "b"),
        Event("s1", T0 + 1, _x(POISON), "bad"),  # Δt = 0 after b
        Event("s1", T0 + 1, _x(POISON), "bad"),  # the same id again: refused again
        Event("s1", T0 + 1.5, _x(0.4), "c"),
        Event("s1", T0 + 4, _x(-POISON), "bad2"),
        Event("s1", T0 + 4.25, _x(0.5), "d"),
    ]
    s2 = [Event("s2", T0 + 0.5 * i, _x(0.1 * i), f"e{i}") for i in range(4)]
    async with running(engine):
        results = await engine.submit(TENANT, "m", [*s1, *s2])
    r1, r2 = results[: len(s1)], results[len(s1) :]
    refused = [i for i, r in enumerate(r1) if isinstance(r, Rejection)]
    assert refused == [2, 3, 5]
    assert all(r.code == "non_finite_state" for r in r1 if isinstance(r, Rejection))
    kept = [p for p in r1 if isinstance(p, Prediction)]
    assert [(p.event_id, p.dt, p.count) for p in kept] == [
        ("a", fragile.default_dt, 1),
        ("b", 1.0, 2),
        ("c", 0.5, 3),
        ("d", 2.75, 4),  # from c at T0 + 1.5: bad2 never happened
    ]
    want, _ = _want(fragile, [(e.t, e.x) for e in s1 if e.event_id in ("a", "b", "c", "d")])
    for p, w in zip(kept, want, strict=True):
        assert np.allclose(p.y, w, atol=TOL)
    want2, _ = _want(fragile, [(e.t, e.x) for e in s2])
    for r, w in zip(r2, want2, strict=True):
        assert isinstance(r, Prediction)
        assert np.allclose(r.y, w, atol=TOL)


async def test_a_stream_whose_every_event_is_refused_writes_nothing(
    store: StateStore, fragile: FragileModel
) -> None:
    engine = make_engine(fragile, store, max_abs_input=math.inf)
    async with running(engine):
        results = await engine.submit(
            TENANT, "m", [Event("s", T0 + i, _x(POISON), f"p{i}") for i in range(3)]
        )
        assert [r.code for r in results if isinstance(r, Rejection)] == ["non_finite_state"] * 3
        assert await engine.stream_info(TENANT, "m", "s") is None
        (ok,) = await engine.submit(TENANT, "m", [Event("s", T0 + 5, _x(), "p0")])
        assert isinstance(ok, Prediction)
        assert ok.reset == "first_event"


async def test_inputs_beyond_max_abs_input_are_refused_before_anything(
    store: StateStore, fragile: FragileModel
) -> None:
    engine = make_engine(fragile, store, max_abs_input=100.0)
    async with running(engine):
        with pytest.raises(InvalidEvent, match="magnitude"):
            await engine.submit(TENANT, "m", [Event("s", T0, (100.5, 0.0))])
        assert await engine.stream_info(TENANT, "m", "s") is None
        (ok,) = await engine.submit(TENANT, "m", [Event("s", T0, (-100.0, 0.0))])
        assert isinstance(ok, Prediction)
