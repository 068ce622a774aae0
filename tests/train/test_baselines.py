"""Baselines are recurrent cells in a LiquidModel and keep its contract, by value: Δt semantics,
masks, step = forward, config and artifact round trips, a gradient step that lowers the loss,
and an LSTM artifact served by the engine."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from liquidcore.cells.recurrent import RECURRENT_CELLS, GRUDCell, ODERNNCell, RecurrentCell
from liquidcore.cells.registry import build_cell
from liquidcore.heads import ReadoutHead
from liquidcore.model import LiquidModel
from liquidcore.train.artifacts import load_artifact, save_artifact
from liquidcore.train.protocol import SequenceModel, count_parameters

KINDS = sorted(RECURRENT_CELLS)
F, H, OUT = 3, 6, 2


def _cell(model: LiquidModel) -> RecurrentCell:
    assert isinstance(model.cell, RecurrentCell)
    return model.cell


def _model(kind: str, seed: int = 0) -> LiquidModel:
    torch.manual_seed(seed)
    head = ReadoutHead(H, OUT, target_mean=[1.0, -1.0], target_std=[2.0, 0.5])
    return LiquidModel(
        RECURRENT_CELLS[kind](F, H),
        head,
        input_mean=[0.5, 0.0, -0.5],
        input_std=[1.0, 2.0, 0.5],
        time_unit=0.5,
        feature_names=["a", "b", "c"],
        output_names=["p", "q"],
    ).eval()


def _batch(B: int = 4, T: int = 5, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, T, F, generator=g), torch.rand(B, T, generator=g) * 2


@pytest.mark.parametrize("kind", KINDS)
def test_forward_contract_and_step_equals_forward(kind: str) -> None:
    model = _model(kind)
    assert isinstance(model, SequenceModel)
    x, dt = _batch()
    y, h = model(x, dt)
    assert y.shape == (4, 5, OUT)
    assert h.shape == (4, model.state_size)
    state = model.init_state(4)
    outs = []
    for t in range(5):
        out, state = model.step(x[:, t], dt[:, t], state)
        outs.append(out)
    torch.testing.assert_close(torch.stack(outs, 1), y, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(state, h, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_masked_steps_keep_the_state(kind: str) -> None:
    model = _model(kind)
    x, dt = _batch()
    mask = torch.ones(4, 5, dtype=torch.bool)
    mask[1, 3:] = False
    mask[2, 1] = False
    y_full, h_full = model(x, dt)
    y_all, h_all = model(x, dt, None, torch.ones(4, 5, dtype=torch.bool))
    torch.testing.assert_close(y_all, y_full, rtol=1e-5, atol=1e-6)  # fused path == loop
    torch.testing.assert_close(h_all, h_full, rtol=1e-5, atol=1e-6)
    y, h = model(x, dt, None, mask)
    # Row 1 stops after step 2: its final state and padded outputs are those of step 2.
    _, h_short = model(x[1:2, :3], dt[1:2, :3])
    torch.testing.assert_close(h[1:2], h_short, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(y[1, 3], y[1, 2])
    torch.testing.assert_close(y[2, 1], y[2, 0])
    torch.testing.assert_close(y[0], y_full[0], rtol=1e-5, atol=1e-6)


def test_discrete_rnns_ignore_dt_and_dt_models_use_it() -> None:
    x, dt = _batch()
    for kind in KINDS:
        model = _model(kind)
        y1, _ = model(x, dt)
        y2, _ = model(x, dt * 3 + 1)
        same = torch.allclose(y1, y2)
        assert same == (not _cell(model).uses_dt), kind


def test_gru_d_decays_the_state_by_the_elapsed_time() -> None:
    cell = _cell(_model("gru_d"))
    assert isinstance(cell, GRUDCell)
    with torch.no_grad():
        cell.decay.weight.fill_(1.0)
        cell.decay.bias.zero_()
    h = torch.randn(2, H)
    x = torch.zeros(2, F)
    dt0 = torch.zeros(2, 1)
    # Δt = 0: no decay, a plain GRU update.
    torch.testing.assert_close(cell.update(x, h, dt0), cell.gru(x, h))
    # Δt (model units) = 2: the state decays by exp(-2) before the update.
    torch.testing.assert_close(
        cell.update(x, h, torch.full((2, 1), 2.0)), cell.gru(x, h * torch.exp(torch.tensor(-2.0)))
    )


def test_ode_rnn_integrates_a_linear_ode_between_events() -> None:
    model = _cell(_model("ode_rnn").double())
    assert isinstance(model, ODERNNCell)
    lin = torch.nn.Linear(H, H, bias=False, dtype=torch.float64)
    with torch.no_grad():
        lin.weight.copy_(-0.7 * torch.eye(H, dtype=torch.float64))
    model.f = lin  # type: ignore[assignment]  # dh/dt = -0.7 h: h(t) = h0 exp(-0.7 t)
    model.ode_steps = 4
    h0 = torch.randn(3, H, dtype=torch.float64)
    got = model.evolve(h0, torch.full((3, 1), 1.5, dtype=torch.float64))
    # Four RK4 steps of z = 0.7 * 1.5 / 4 multiply by RK4's stability polynomial R(-z)^4 ...
    z = 0.7 * 1.5 / 4
    rk4_factor = (1 - z + z**2 / 2 - z**3 / 6 + z**4 / 24) ** 4
    torch.testing.assert_close(got, h0 * rk4_factor, rtol=1e-12, atol=1e-12)
    # ... which is the exact decay exp(-1.05) to RK4's accuracy.
    torch.testing.assert_close(
        got, h0 * torch.exp(torch.tensor(-1.05, dtype=torch.float64)), rtol=1e-4, atol=1e-8
    )
    torch.testing.assert_close(model.evolve(h0, torch.zeros(3, 1, dtype=torch.float64)), h0)


@pytest.mark.parametrize("kind", KINDS)
def test_a_gradient_step_lowers_the_loss(kind: str) -> None:
    model = _model(kind).train()
    x, dt = _batch(8, 6)
    target = torch.randn(8, 6, OUT)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    losses = []
    for _ in range(5):
        y, _ = model(x, dt)
        loss = (y - target).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        assert all(p.grad is not None for p in model.parameters())
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert count_parameters(model) > 0


@pytest.mark.parametrize("kind", KINDS)
def test_config_and_artifact_round_trip(kind: str, tmp_path: Path) -> None:
    model = _model(kind, seed=3)
    x, dt = _batch()
    y, _ = model(x, dt)
    rebuilt = LiquidModel.from_config(model.get_config())
    assert type(rebuilt.cell) is type(model.cell)
    assert build_cell(model.cell.get_config()).get_config() == model.cell.get_config()
    version = save_artifact(model, tmp_path / "m")
    loaded = load_artifact(tmp_path / "m")
    assert type(loaded.cell) is type(model.cell)
    assert loaded.version == version
    assert loaded.feature_names == ["a", "b", "c"]
    torch.testing.assert_close(loaded(x, dt)[0], y)


def test_unknown_baseline_lists_the_valid_ones() -> None:
    from liquidcore.train.config import ModelConfig
    from liquidcore.train.factory import build_recurrent_cell

    with pytest.raises(ValueError, match="gru_d"):
        build_cell({"type": "transformer", "input_size": F, "hidden_size": H})
    with pytest.raises(ValueError, match="ode_steps must be >= 1"):
        RECURRENT_CELLS["ode_rnn"](F, H, ode_steps=0)
    with pytest.raises(ValueError, match="does not take"):
        build_recurrent_cell(ModelConfig(kind="lstm", cell_options={"ode_steps": 3}), F)
