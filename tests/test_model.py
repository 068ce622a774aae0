"""LiquidModel: stepping equals the sequence form, masks and resets, time units, names, errors."""

from __future__ import annotations

import math

import pytest
import torch

from liquidcore.heads import ReadoutHead
from liquidcore.model import LiquidModel
from tests.model_factory import VARIANTS, irregular_batch, make_cell, make_model

torch.set_default_dtype(torch.float32)


@pytest.mark.parametrize("kind", VARIANTS)
def test_stepping_one_event_at_a_time_equals_forward(kind: str) -> None:
    model = make_model(kind)
    x, dt = irregular_batch(model)
    with torch.no_grad():
        y_seq, h_seq = model(x, dt)
        h = model.init_state(x.shape[0])
        ys = []
        for t in range(x.shape[1]):
            y, h = model.step(x[:, t], dt[:, t], h)
            ys.append(y)
    torch.testing.assert_close(torch.stack(ys, 1), y_seq, rtol=0, atol=1e-6)
    torch.testing.assert_close(h, h_seq, rtol=0, atol=1e-6)


@pytest.mark.parametrize("kind", VARIANTS)
def test_masked_steps_leave_state_unchanged(kind: str) -> None:
    model = make_model(kind)
    x, dt = irregular_batch(model, batch=2, steps=5)
    mask = torch.tensor([[True] * 5, [True, True, True, False, False]])
    with torch.no_grad():
        y, h = model(x, dt, mask=mask)
        y_short, h_short = model(x[1:, :3], dt[1:, :3])
        _y_full, h_full = model(x[:1], dt[:1])
    torch.testing.assert_close(h[1:], h_short, rtol=0, atol=1e-6)
    torch.testing.assert_close(y[1:, :3], y_short, rtol=0, atol=1e-6)
    torch.testing.assert_close(h[:1], h_full, rtol=0, atol=1e-6)
    # a padded step reports what the held state gives
    expected_pad = model.output_of(h_short)
    torch.testing.assert_close(y[1, 3], expected_pad[0], rtol=0, atol=1e-6)
    torch.testing.assert_close(y[1, 4], expected_pad[0], rtol=0, atol=1e-6)


@pytest.mark.parametrize("kind", ["cfc", "ltc", "mixed_cfc"])
def test_reset_restarts_the_stream_mid_sequence(kind: str) -> None:
    model = make_model(kind)
    x, dt = irregular_batch(model, batch=2, steps=6)
    reset = torch.zeros(2, 6, dtype=torch.bool)
    reset[0, 3] = True
    with torch.no_grad():
        y, h = model(x, dt, reset=reset)
        y_tail, h_tail = model(x[:1, 3:], dt[:1, 3:])
        _y_plain, h_plain = model(x[1:], dt[1:])
    torch.testing.assert_close(y[0, 3:], y_tail[0], rtol=0, atol=1e-6)
    torch.testing.assert_close(h[0], h_tail[0], rtol=0, atol=1e-6)
    torch.testing.assert_close(h[1], h_plain[0], rtol=0, atol=1e-6)


@pytest.mark.parametrize("kind", ["cfc", "ltc"])
def test_time_unit_converts_seconds_once(kind: str) -> None:
    model = make_model(kind)  # time_unit = 0.5 s
    twin = LiquidModel.from_config({**model.get_config(), "time_unit": 1.0})
    twin.load_state_dict(model.state_dict())
    x, dt = irregular_batch(model)
    with torch.no_grad():
        y_half, _ = model(x, dt)
        y_one, _ = twin.eval()(x, dt / 0.5)  # same model time units
    torch.testing.assert_close(y_half, y_one, rtol=0, atol=1e-6)


@pytest.mark.parametrize("kind", ["cfc", "ltc"])
def test_advance_is_the_state_step_gives(kind: str) -> None:
    model = make_model(kind)
    x, dt = irregular_batch(model, batch=4, steps=1)
    h0 = model.init_state(4)
    with torch.no_grad():
        _, h1 = model.step(x[:, 0], dt[:, 0], h0)
        torch.testing.assert_close(model.advance(h0, dt[:, 0], x[:, 0]), h1, rtol=0, atol=0)


def test_classification_present_gives_probabilities() -> None:
    model = make_model("cfc", classification=True)
    x, dt = irregular_batch(model)
    with torch.no_grad():
        y, _ = model(x, dt)
        p = model.present(y)
    torch.testing.assert_close(p.sum(-1), torch.ones(p.shape[:-1]))
    assert bool((p > 0).all())


def test_normalisation_and_target_scale_are_applied() -> None:
    cell = make_cell("cfc", inputs=2)
    head = ReadoutHead(cell.output_size, 1)
    plain = LiquidModel(cell, head).eval()
    scaled = LiquidModel(
        cell,
        ReadoutHead(cell.output_size, 1, target_mean=[10.0], target_std=[2.0]),
        input_mean=[1.0, 2.0],
        input_std=[2.0, 4.0],
    ).eval()
    scaled.head.load_state_dict(head.state_dict())
    x = torch.tensor([[3.0, 6.0]])
    with torch.no_grad():
        y_plain, _ = plain.step(torch.tensor([[1.0, 1.0]]), 1.0, plain.init_state(1))
        y_scaled, _ = scaled.step(x, 1.0, scaled.init_state(1))
    torch.testing.assert_close(y_scaled, y_plain * 2.0 + 10.0)


@pytest.mark.parametrize("kind", ["cfc", "ltc"])
@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf])
def test_bad_dt_raises_before_any_compute(kind: str, bad: float) -> None:
    model = make_model(kind)
    h = model.init_state(2)
    with pytest.raises(ValueError, match="elapsed time must be"):
        model.step(torch.zeros(2, model.input_size), torch.tensor([1.0, bad]), h)


def test_shape_and_config_errors_are_value_errors() -> None:
    model = make_model("cfc")
    with pytest.raises(ValueError, match=r"x must be \[n, 5\]"):
        model.step(torch.zeros(2, 4), 1.0, model.init_state(2))
    with pytest.raises(ValueError, match=r"h must be \[2, "):
        model.step(torch.zeros(2, 5), 1.0, model.init_state(3))
    with pytest.raises(ValueError, match=r"x must be \[B, T, 5\]"):
        model(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="mask must be a bool tensor"):
        model(torch.zeros(2, 3, 5), mask=torch.ones(2, 3))
    cell = make_cell("cfc")
    with pytest.raises(ValueError, match="time_unit"):
        LiquidModel(cell, time_unit=0.0)
    with pytest.raises(ValueError, match="feature_names has 2 names"):
        LiquidModel(cell, feature_names=["a", "b"])
    with pytest.raises(ValueError, match="unique"):
        LiquidModel(cell, feature_names=["a"] * 5)
    with pytest.raises(ValueError, match="input_std"):
        LiquidModel(cell, input_std=[1.0, 1.0, 0.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="head takes"):
        LiquidModel(cell, ReadoutHead(cell.output_size + 1, 2))
    with pytest.raises(ValueError, match="unknown head kind"):
        ReadoutHead(3, 2, kind="ranking")


@pytest.mark.parametrize("dt", [0.0, 1e-9, 1e9])
@pytest.mark.parametrize("kind", VARIANTS)
def test_extreme_dt_gives_finite_outputs(kind: str, dt: float) -> None:
    model = make_model(kind)
    x, _ = irregular_batch(model, batch=3, steps=4)
    with torch.no_grad():
        y, h = model(x, torch.full((3, 4), dt))
    assert bool(torch.isfinite(y).all())
    assert bool(torch.isfinite(h).all())
