"""The trainer on a toy model that only keeps the protocol: best weights, early stopping,
clipping modes and the learning-rate schedule as applied."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from liquidcore.data import DatasetSplits, SequenceSet, TaskSpec
from liquidcore.train.config import OptimConfig
from liquidcore.train.trainer import clip_gradients, fit


class Offset(nn.Module):
    """``y = x * 0 + b``: the best ``b`` is the mean target."""

    def __init__(self, start: float) -> None:
        super().__init__()
        self.b = nn.Parameter(torch.tensor([start]))

    def forward(
        self,
        x: Tensor,
        dt: Tensor | None = None,
        h0: Tensor | None = None,
        mask: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        y = x[..., :1] * 0 + self.b
        return y, y[:, -1]


def _set(value: float, n: int = 16) -> SequenceSet:
    return SequenceSet(
        x=np.zeros((n, 4, 1), np.float32),
        dt=np.ones((n, 4), np.float32),
        y=np.full((n, 4, 1), value, np.float32),
    )


SPEC = TaskSpec("regression", n_features=1, n_outputs=1)


def _cfg(**kw: object) -> OptimConfig:
    base = {
        "epochs": 4,
        "batch_size": 8,
        "lr": 0.1,
        "schedule": "constant",
        "patience": 0,
        "clip_norm": 0.0,
    }
    base.update(kw)
    return OptimConfig.from_dict(base)


def test_best_validation_epoch_is_kept() -> None:
    # Training pulls b from -1 towards +1; validation wants -1, so it only gets worse.
    data = DatasetSplits(SPEC, _set(1.0), _set(-1.0))
    one = Offset(-1.0)
    fit(one, data, _cfg(epochs=1))
    four = Offset(-1.0)
    result = fit(four, data, _cfg(epochs=4))
    assert result.epochs_done == 4
    assert result.best_epoch == 1
    losses = [h["valid_loss"] for h in result.history]
    assert losses == sorted(losses)
    torch.testing.assert_close(four.b, one.b)  # the model holds the epoch-1 weights


def test_early_stopping_after_patience_epochs_without_improvement() -> None:
    data = DatasetSplits(SPEC, _set(1.0), _set(-1.0))
    result = fit(Offset(-1.0), data, _cfg(epochs=10, patience=2))
    assert result.stopped_early
    assert result.finished
    assert result.epochs_done == 3  # best at 1, then 2 epochs without improvement


def test_exponential_schedule_decays_per_epoch() -> None:
    data = DatasetSplits(SPEC, _set(1.0), _set(1.0))
    result = fit(Offset(0.0), data, _cfg(epochs=3, schedule="exponential", decay=0.5))
    # lr recorded after the last batch of each epoch: 0.1 * 0.5 ** ((2e - 1) / 2) for 2 batches
    lrs = [h["lr"] for h in result.history]
    np.testing.assert_allclose(lrs, [0.1 * 0.5 ** ((2 * e + 1) / 2) for e in range(3)])


def test_clipping_modes() -> None:
    a, b = nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(1))
    model = nn.Module()
    model.a, model.b = a, b
    a.grad = torch.tensor([3.0, 4.0])  # norm 5
    b.grad = torch.tensor([0.5])
    clip_gradients(model, 1.0, "per_tensor")  # Keras clipnorm: each tensor by its own norm
    torch.testing.assert_close(a.grad, torch.tensor([0.6, 0.8]))
    torch.testing.assert_close(b.grad, torch.tensor([0.5]))
    a.grad = torch.tensor([3.0, 4.0])
    b.grad = torch.tensor([0.0])
    clip_gradients(model, 1.0, "global")
    torch.testing.assert_close(a.grad, torch.tensor([0.6, 0.8]))
    with pytest.raises(ValueError, match="clip_mode"):
        fit(Offset(0.0), DatasetSplits(SPEC, _set(1.0), _set(1.0)), _cfg(), clip_mode="norm")
