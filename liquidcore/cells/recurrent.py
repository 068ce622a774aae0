"""Discrete and continuous-time recurrent cells (the benchmarks' baselines) under the cell
contract of :mod:`liquidcore.cells.base`, so each one is a :class:`liquidcore.LiquidModel` with
the same normalisation, head, ``init_state``/``step``/``forward``, artifact format and loader as
the liquid cells, and the service serves any of them.

- ``lstm``, ``gru``: ignore Δt. Served, they are stepped by Δt-agnostic recurrence: every event
  is one update whatever time passed, and ``advance``/``predict_at`` applies one more update with
  the held input (what a discrete RNN behind an endpoint does);
- ``gru_dt``: Δt (model time units) as one extra input ("augmented" RNN);
- ``gru_d``: GRU-D-style exponential decay of the state over the elapsed time,
  ``h <- exp(-relu(w * dt + b)) * h`` before each update (Che et al., 2018; all features are
  observed at every event, so the input decay of GRU-D has nothing to do);
- ``ode_rnn``: ODE-RNN (Rubanova et al., 2019): between events the state follows
  ``dh/dt = f(h)`` (an MLP), integrated with ``ode_steps`` fixed RK4 steps over Δt, then a GRU
  update at the event.

The state is one flat tensor per stream (an LSTM's ``[h, c]`` concatenated); the output is its
first ``hidden_size`` entries. Submodule names (``rnn``, ``gru``, ``decay``, ``f``) and the
order in which parameters are drawn are those of the former ``RecurrentBaseline`` classes.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from liquidcore.cells.base import LiquidCell


class RecurrentCell(LiquidCell):
    """Sizes, output, config round trip and the fused no-mask sequence path of the baselines."""

    uses_dt: ClassVar[bool] = False

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        if input_size < 1 or hidden_size < 1:
            raise ValueError(
                f"input_size and hidden_size must be >= 1; got {input_size}, {hidden_size}"
            )
        self.input_size = int(input_size)
        self.hidden_size = int(hidden_size)
        self.state_size = self.hidden_size
        self.output_size = self.hidden_size

    @abstractmethod
    def update(self, x: Tensor, h: Tensor, dt: Tensor) -> Tensor:
        """One event: ``x[B,F]``, ``h[B,S]``, ``dt[B,1]`` model units -> ``h'[B,S]``."""

    def run(self, x: Tensor, h: Tensor, dt: Tensor) -> tuple[Tensor, Tensor]:
        """All ``T`` events without a mask: ``(out[B,T,H], h_T)``. Subclasses may fuse this."""
        return super().forward_sequence(x, h, dt)

    def forward(self, x: Tensor, h: Tensor, dt: Tensor) -> tuple[Tensor, Tensor]:
        h_new = self.update(x, h, dt)
        return self.output_of(h_new), h_new

    def forward_sequence(
        self, x: Tensor, h: Tensor, dt: Tensor, mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        if mask is None:
            return self.run(x, h, dt)
        return super().forward_sequence(x, h, dt, mask)

    def output_of(self, h: Tensor) -> Tensor:
        return h[:, : self.hidden_size]

    def options(self) -> dict[str, Any]:
        """Constructor options beyond the two sizes (part of the config)."""
        return {}

    def get_config(self) -> dict[str, Any]:
        return {
            "type": self.cell_type,
            "input_size": self.input_size,
            "hidden_size": self.hidden_size,
            **self.options(),
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> RecurrentCell:
        if config.get("type") != cls.cell_type:
            raise ValueError(
                f"{cls.__name__}.from_config needs a config of type {cls.cell_type!r}; "
                f"got {config.get('type')!r}"
            )
        return cls(**{k: v for k, v in config.items() if k != "type"})


class LSTMCell(RecurrentCell):
    """``nn.LSTM``; the state is ``[h, c]``, the output ``h``. Ignores Δt."""

    cell_type: ClassVar[str] = "lstm"
    rnn: nn.LSTM

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__(input_size, hidden_size)
        self.state_size = 2 * self.hidden_size
        self.rnn = nn.LSTM(self.input_size, self.hidden_size, batch_first=True)

    def _split(self, h: Tensor) -> tuple[Tensor, Tensor]:
        H = self.hidden_size
        return h[None, :, :H].contiguous(), h[None, :, H:].contiguous()

    def update(self, x: Tensor, h: Tensor, dt: Tensor) -> Tensor:
        _, (hn, cn) = self.rnn(x[:, None], self._split(h))
        return torch.cat([hn[0], cn[0]], dim=1)

    def run(self, x: Tensor, h: Tensor, dt: Tensor) -> tuple[Tensor, Tensor]:
        out, (hn, cn) = self.rnn(x, self._split(h))
        return out, torch.cat([hn[0], cn[0]], dim=1)


class GRUCell(RecurrentCell):
    """``nn.GRU``. Ignores Δt."""

    cell_type: ClassVar[str] = "gru"
    rnn: nn.GRU

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__(input_size, hidden_size)
        self.rnn = nn.GRU(self.input_size + int(self.uses_dt), self.hidden_size, batch_first=True)

    def _inputs(self, x: Tensor, dt: Tensor) -> Tensor:
        return x

    def update(self, x: Tensor, h: Tensor, dt: Tensor) -> Tensor:
        _, hn = self.rnn(self._inputs(x[:, None], dt), h[None].contiguous())
        return hn[0]

    def run(self, x: Tensor, h: Tensor, dt: Tensor) -> tuple[Tensor, Tensor]:
        out, hn = self.rnn(self._inputs(x, dt), h[None].contiguous())
        return out, hn[0]


class GRUDtCell(GRUCell):
    """A GRU with the elapsed time (model units) as one more input."""

    cell_type: ClassVar[str] = "gru_dt"
    uses_dt: ClassVar[bool] = True

    def _inputs(self, x: Tensor, dt: Tensor) -> Tensor:
        # x[B, T, F] with dt[B, T] (a sequence) or dt[B, 1] (one event, T = 1)
        return torch.cat([x, dt[..., None].to(x.dtype)], dim=-1)


class GRUDCell(RecurrentCell):
    """GRU-D-style: the state decays towards zero over the elapsed time, then a GRU update."""

    cell_type: ClassVar[str] = "gru_d"
    uses_dt: ClassVar[bool] = True

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__(input_size, hidden_size)
        self.decay = nn.Linear(1, self.hidden_size)
        self.gru = nn.GRUCell(self.input_size, self.hidden_size)

    def update(self, x: Tensor, h: Tensor, dt: Tensor) -> Tensor:
        gamma = torch.exp(-torch.relu(self.decay(dt.to(x.dtype))))
        return self.gru(x, gamma * h)


class ODERNNCell(RecurrentCell):
    """ODE-RNN: an autonomous neural ODE between events (fixed-step RK4), a GRU update at them."""

    cell_type: ClassVar[str] = "ode_rnn"
    uses_dt: ClassVar[bool] = True

    def __init__(
        self, input_size: int, hidden_size: int, ode_steps: int = 2, ode_hidden: int | None = None
    ) -> None:
        super().__init__(input_size, hidden_size)
        if ode_steps < 1:
            raise ValueError(f"ode_steps must be >= 1; got {ode_steps}")
        self.ode_steps = int(ode_steps)
        self.ode_hidden = int(ode_hidden or hidden_size)
        self.f = nn.Sequential(
            nn.Linear(self.hidden_size, self.ode_hidden),
            nn.Tanh(),
            nn.Linear(self.ode_hidden, self.hidden_size),
        )
        self.gru = nn.GRUCell(self.input_size, self.hidden_size)

    def options(self) -> dict[str, Any]:
        return {"ode_steps": self.ode_steps, "ode_hidden": self.ode_hidden}

    def evolve(self, h: Tensor, dt: Tensor) -> Tensor:
        """Integrate ``dh/dt = f(h)`` over ``dt[B,1]`` with ``ode_steps`` RK4 steps."""
        step = dt.to(h.dtype) / self.ode_steps
        for _ in range(self.ode_steps):
            k1 = self.f(h)
            k2 = self.f(h + 0.5 * step * k1)
            k3 = self.f(h + 0.5 * step * k2)
            k4 = self.f(h + step * k3)
            h = h + step / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
        return h

    def update(self, x: Tensor, h: Tensor, dt: Tensor) -> Tensor:
        return self.gru(x, self.evolve(h, dt))


RECURRENT_CELLS: dict[str, type[RecurrentCell]] = {
    cls.cell_type: cls for cls in (LSTMCell, GRUCell, GRUDtCell, GRUDCell, ODERNNCell)
}
