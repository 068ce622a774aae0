"""A baseline is served like a liquid model: an LSTM (and a GRU-D) artifact saved, loaded by the
service's loader and stepped by the engine gives what stepping it offline gives. The LSTM
ignores Δt (Δt-agnostic recurrence: one update per event, whatever time passed)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from liquidcore.checkpoint import load_model, save_model
from service.engine import Engine, EngineConfig, Event, Prediction
from service.live.bus import MemoryLiveBus
from service.metrics import Metrics
from service.store import StateStore
from tests.model_factory import RECURRENT_VARIANTS, make_model

pytestmark = pytest.mark.anyio

T0 = 1_700_000_000.0


def offline(model: torch.nn.Module, events: list[tuple[float, list[float]]]) -> list[list[float]]:
    ys, h, last = [], model.init_state(1), None
    with torch.inference_mode():
        for t, x in events:
            dt = model.default_dt if last is None else t - last
            y, h = model.step(torch.tensor([x]), torch.tensor([dt]), h)
            ys.append(model.present(y)[0].tolist())
            last = t
    return ys


@pytest.mark.parametrize("kind", RECURRENT_VARIANTS)
async def test_a_baseline_artifact_is_served_as_stepped_offline(
    store: StateStore, kind: str, tmp_path: Path
) -> None:
    version = save_model(make_model(kind, seed=2), tmp_path / kind)
    model = load_model(tmp_path / kind)  # what service.engine.registry loads
    assert model.version == version
    assert type(model.cell).cell_type == kind
    rng = random.Random(3)
    t, events = T0, []
    for i in range(8):
        t += rng.choice([0.0, 0.01, 0.5, 3.0]) if i else 0.0
        events.append((t, [rng.uniform(-2, 2) for _ in range(model.input_size)]))
    engine = Engine(
        {"m": model}, store, MemoryLiveBus(), Metrics(), EngineConfig(max_delay_s=0.001)
    )
    await engine.start()
    try:
        got: list[Prediction] = []
        for lo, hi in ((0, 3), (3, 8)):
            res = await engine.submit(
                "acme", "m", [Event("s", t, tuple(x)) for t, x in events[lo:hi]]
            )
            assert all(isinstance(r, Prediction) for r in res), res
            got += res  # type: ignore[arg-type]
    finally:
        await engine.stop()
    want = offline(model, events)
    assert [p.reset is not None for p in got] == [True] + [False] * 7
    for p, y in zip(got, want, strict=True):
        torch.testing.assert_close(torch.tensor(p.y), torch.tensor(y), rtol=0, atol=1e-6)


def test_the_lstm_ignores_dt_and_gru_d_uses_it() -> None:
    for kind, uses_dt in (("lstm", False), ("gru_d", True)):
        model = make_model(kind)
        x = torch.randn(2, model.input_size)
        h = torch.randn(2, model.state_size)  # non-zero: a decay of zeros changes nothing
        with torch.inference_mode():
            y1, _ = model.step(x, torch.tensor([0.1, 0.1]), h)
            y2, _ = model.step(x, torch.tensor([30.0, 30.0]), h)
        assert torch.equal(y1, y2) != uses_dt, kind
