"""The baselines' numbers are unchanged by their move into the model shell: for the same seed,
``build_model`` draws the same weights as the former ``RecurrentBaseline`` classes, and outputs,
final states and gradients are bit-identical. A frozen copy of the former code (forward, cells
and drawing order; normalisation and head as they were) lives here, in the test only."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor, nn

from liquidcore.data.sequences import TaskSpec
from liquidcore.heads import ReadoutHead
from liquidcore.train.config import ModelConfig
from liquidcore.train.factory import build_model

F, H, OUT = 4, 7, 3


class FrozenBaseline(nn.Module):
    """``liquidcore.train.baselines.RecurrentBaseline`` as of commit ad9671a, condensed."""

    def __init__(self, kind: str, head: ReadoutHead, mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.kind, self.head = kind, head
        self.mean, self.std = torch.tensor(mean), torch.tensor(std)
        if kind == "lstm":
            self.rnn: Any = nn.LSTM(F, H, batch_first=True)
        elif kind in ("gru", "gru_dt"):
            self.rnn = nn.GRU(F + int(kind == "gru_dt"), H, batch_first=True)
        elif kind == "gru_d":
            self.decay = nn.Linear(1, H)
            self.gru = nn.GRUCell(F, H)
        else:
            self.f = nn.Sequential(nn.Linear(H, H), nn.Tanh(), nn.Linear(H, H))
            self.gru = nn.GRUCell(F, H)
        self.state_size = 2 * H if kind == "lstm" else H

    def _split(self, h: Tensor) -> tuple[Tensor, Tensor]:
        return h[None, :, :H].contiguous(), h[None, :, H:].contiguous()

    def _inputs(self, x: Tensor, dt: Tensor) -> Tensor:
        return torch.cat([x, dt[..., None]], dim=-1) if self.kind == "gru_dt" else x

    def cell(self, x: Tensor, h: Tensor, dt: Tensor) -> Tensor:
        if self.kind == "lstm":
            _, (hn, cn) = self.rnn(
                x[:, None], (h[None, :, :H].contiguous(), h[None, :, H:].contiguous())
            )
            return torch.cat([hn[0], cn[0]], dim=1)
        if self.kind in ("gru", "gru_dt"):
            return self.rnn(self._inputs(x[:, None], dt), h[None].contiguous())[1][0]
        if self.kind == "gru_d":
            return self.gru(x, torch.exp(-torch.relu(self.decay(dt))) * h)
        step = dt / 2
        for _ in range(2):
            k1 = self.f(h)
            k2 = self.f(h + 0.5 * step * k1)
            k3 = self.f(h + 0.5 * step * k2)
            k4 = self.f(h + step * k3)
            h = h + step / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
        return self.gru(x, h)

    def run(self, x: Tensor, h: Tensor, dt: Tensor) -> tuple[Tensor, Tensor]:
        if self.kind == "lstm":
            out, (hn, cn) = self.rnn(x, self._split(h))
            return out, torch.cat([hn[0], cn[0]], dim=1)
        if self.kind in ("gru", "gru_dt"):
            out, hn = self.rnn(self._inputs(x, dt), h[None].contiguous())
            return out, hn[0]
        outs = []
        for t in range(x.shape[1]):
            h = self.cell(x[:, t], h, dt[:, t : t + 1])
            outs.append(h[:, :H])
        return torch.stack(outs, dim=1), h

    def forward(self, x: Tensor, dt: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
        h = torch.zeros(x.shape[0], self.state_size)
        dt_units = (dt.to(torch.float64) / 0.5).to(h.dtype)  # time_unit 0.5 s
        xn = (x - self.mean) / self.std
        if mask is None:
            out, h = self.run(xn, h, dt_units)
        else:
            outs = []
            for t in range(x.shape[1]):
                h_new = self.cell(xn[:, t], h, dt_units[:, t : t + 1])
                h = torch.where(mask[:, t : t + 1], h_new, h)
                outs.append(h[:, :H])
            out = torch.stack(outs, dim=1)
        return self.head(out), h


@pytest.mark.parametrize("kind", ["lstm", "gru", "gru_dt", "gru_d", "ode_rnn"])
@pytest.mark.parametrize("masked", [False, True])
def test_new_cells_equal_the_former_baselines_bit_for_bit(kind: str, masked: bool) -> None:
    spec = TaskSpec("regression", F, OUT, time_unit=0.5)
    mean, std = [0.1, -0.2, 0.3, 0.0], [1.0, 2.0, 0.5, 1.5]
    torch.manual_seed(11)
    new = build_model(ModelConfig(kind=kind, units=H), spec, input_mean=mean, input_std=std)
    torch.manual_seed(11)  # the former factory drew the head, then the baseline's layers
    old = FrozenBaseline(kind, ReadoutHead(H, OUT, kind="regression"), mean, std)
    old_state = old.state_dict()
    new_state = {k.removeprefix("cell."): v for k, v in new.state_dict().items()}
    assert set(old_state) == set(new_state)
    for k, v in old_state.items():
        assert torch.equal(v, new_state[k]), k  # the same weights from the same seed

    g = torch.Generator().manual_seed(5)
    x = torch.randn(6, 9, F, generator=g)
    dt = torch.rand(6, 9, generator=g) * 2
    mask = (torch.rand(6, 9, generator=g) > 0.3) if masked else None
    y_old, h_old = old(x, dt, mask)
    y_new, h_new = new(x, dt, mask=mask)
    assert torch.equal(y_old, y_new)
    assert torch.equal(h_old, h_new)
    (y_old.square().sum() + h_old.sum()).backward()
    (y_new.square().sum() + h_new.sum()).backward()
    grads_new = {k.removeprefix("cell."): p.grad for k, p in new.named_parameters()}
    for k, p in old.named_parameters():
        assert p.grad is not None
        assert torch.equal(p.grad, grads_new[k]), k
