"""Loss selection, metrics, schedules and the pickle-free training state, by value."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from liquidcore.train.losses import MetricAccumulator, macro_f1, scored, sequence_loss
from liquidcore.train.schedule import lr_factor
from liquidcore.train.state import (
    flatten_optimizer,
    load_training_state,
    save_training_state,
    unflatten_optimizer,
)


def test_last_step_loss_uses_the_last_valid_step() -> None:
    y = torch.arange(2 * 4 * 1, dtype=torch.float32).reshape(2, 4, 1)
    target = torch.zeros(2, 4, 1)
    mask = torch.tensor([[True, True, False, False], [True, True, True, True]])
    y_sel, _ = scored(y, target, mask, "last")
    np.testing.assert_array_equal(y_sel[:, 0].numpy(), [1.0, 7.0])
    loss = sequence_loss(y, target, mask, task="regression", loss_on="last")
    assert float(loss) == pytest.approx((1.0 + 49.0) / 2)
    labels = torch.tensor([3, 1])  # one label per window
    _, t = scored(y, labels, mask, "last")
    np.testing.assert_array_equal(t.numpy(), [3, 1])


def test_all_step_loss_ignores_padding_and_scales_by_target_std() -> None:
    y = torch.tensor([[[2.0, 4.0], [100.0, 100.0]]])
    target = torch.zeros(1, 2, 2)
    mask = torch.tensor([[True, False]])
    loss = sequence_loss(
        y, target, mask, task="regression", loss_on="all", scale=torch.tensor([2.0, 4.0])
    )
    assert float(loss) == pytest.approx(1.0)  # ((2/2)^2 + (4/4)^2) / 2


def test_metrics_mse_mae_accuracy_and_macro_f1() -> None:
    acc = MetricAccumulator("regression", 1)
    acc.add(torch.tensor([[1.0], [3.0]]), torch.tensor([[0.0], [0.0]]), torch.tensor(5.0))
    r = acc.result()
    assert r["mse"] == pytest.approx(5.0)
    assert r["mae"] == pytest.approx(2.0)
    cm = torch.tensor([[5, 0, 0], [2, 3, 0], [0, 0, 0]])
    # class 0: P=5/7 R=1 F1=10/12; class 1: P=1 R=3/5 F1=0.75; class 2 absent
    assert macro_f1(cm) == pytest.approx((10 / 12 + 0.75) / 2)
    c = MetricAccumulator("classification", 2)
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0]])
    c.add(logits, torch.tensor([0, 1, 1]), torch.tensor(0.5))
    assert c.result()["accuracy"] == pytest.approx(2 / 3)


def test_schedules() -> None:
    assert lr_factor("exponential", 10, steps_per_epoch=10, epochs=5, decay=0.5) == 0.5
    assert lr_factor("exponential", 5, steps_per_epoch=10, epochs=5, decay=0.25) == 0.5
    assert lr_factor("cosine", 0, steps_per_epoch=10, epochs=5) == 1.0
    assert lr_factor("cosine", 25, steps_per_epoch=10, epochs=5, min_lr_ratio=0.1) == (
        pytest.approx(0.55)
    )
    assert lr_factor("cosine", 500, steps_per_epoch=10, epochs=5, min_lr_ratio=0.1) == (
        pytest.approx(0.1)
    )
    with pytest.raises(ValueError, match="valid"):
        lr_factor("step", 0, steps_per_epoch=1, epochs=1)


def _adam_after_steps() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    opt = torch.optim.Adam(model.parameters(), lr=0.01, betas=(0.8, 0.95))
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(5, 3)).pow(2).mean().backward()
        opt.step()
    return model, opt


def test_optimizer_state_round_trips_without_pickle() -> None:
    _, opt = _adam_after_steps()
    tensors, rest = flatten_optimizer(opt)
    assert all(isinstance(v, torch.Tensor) for v in tensors.values())
    sd = unflatten_optimizer(tensors, rest)
    ref = opt.state_dict()
    assert sd["param_groups"][0]["betas"] == (0.8, 0.95)
    assert sd["param_groups"] == ref["param_groups"]
    for pid, entry in ref["state"].items():
        for k, v in entry.items():
            torch.testing.assert_close(sd["state"][pid][k], v)


def test_training_state_restores_model_optimizer_and_rngs(tmp_path: Path) -> None:
    model, opt = _adam_after_steps()
    torch.manual_seed(11)
    np.random.seed(12)
    random.seed(13)
    save_training_state(tmp_path, model=model, best=None, optimizer=opt, meta={"epoch": 3})
    expected = (torch.rand(3), np.random.rand(3), random.random())
    assert not list(tmp_path.glob("state/*.pkl"))
    assert "state.0.exp_avg" in load_file(str(tmp_path / "state" / "optimizer.safetensors"))

    model2, opt2 = _adam_after_steps()
    with torch.no_grad():
        for p in model2.parameters():
            p.add_(1.0)
    meta, best = load_training_state(tmp_path, model=model2, optimizer=opt2)
    assert meta == {"epoch": 3}
    assert best is None
    for a, b in zip(model.parameters(), model2.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    got = (torch.rand(3), np.random.rand(3), random.random())
    torch.testing.assert_close(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])
    assert got[2] == expected[2]
    assert not math.isnan(got[2])
