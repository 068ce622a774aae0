"""Discrete and continuous-time recurrent baselines with the model's sequence API.

Every baseline takes raw inputs and Δt in seconds, normalises the inputs with stored
statistics, and reads out through the same :class:`liquidcore.heads.ReadoutHead` as a liquid
model, so the harness trains them on the same windows, loss and optimiser:

- ``lstm``, ``gru``: ignore Δt (what a discrete RNN behind an endpoint does);
- ``gru_dt``: Δt (model time units) as one extra input ("augmented" RNN);
- ``gru_d``: GRU-D-style exponential decay of the state over the elapsed time,
  ``h <- exp(-relu(w * dt + b)) * h`` before each update (Che et al., 2018; all features are
  observed at every event, so the input decay of GRU-D has nothing to do);
- ``ode_rnn``: ODE-RNN (Rubanova et al., 2019): between events the state follows
  ``dh/dt = f(h)`` (an MLP), integrated with ``ode_steps`` fixed RK4 steps over Δt, then a GRU
  update at the event.

State is one flat tensor per stream (an LSTM's ``[h, c]`` concatenated), as for liquid cells.
A masked-out step keeps the state and outputs what it gives.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from liquidcore.heads import ReadoutHead
from liquidcore.normalization import affine_stats, checked_names
from liquidcore.timing import ElapsedLike, elapsed_for_sequence


class RecurrentBaseline(nn.Module):
    """Shared plumbing: normalisation, Δt in seconds, masks, head, config round trip."""

    kind: ClassVar[str]
    uses_dt: ClassVar[bool] = False
    input_mean: Tensor
    input_std: Tensor

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        head: ReadoutHead | None = None,
        *,
        input_mean: Sequence[float] | None = None,
        input_std: Sequence[float] | None = None,
        time_unit: float = 1.0,
        default_dt: float | None = None,
        feature_names: Sequence[str] | None = None,
        output_names: Sequence[str] | None = None,
        name: str = "baseline",
        metadata: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if input_size < 1 or hidden_size < 1:
            raise ValueError(
                f"input_size and hidden_size must be >= 1; got {input_size}, {hidden_size}"
            )
        if not time_unit > 0:
            raise ValueError(f"time_unit must be seconds > 0; got {time_unit}")
        self.input_size = int(input_size)
        self.hidden_size = int(hidden_size)
        self.head = head if head is not None else ReadoutHead(hidden_size)
        if self.head.in_features != hidden_size:
            raise ValueError(
                f"head takes {self.head.in_features} inputs; the baseline outputs {hidden_size}"
            )
        self.time_unit = float(time_unit)
        self.default_dt = self.time_unit if default_dt is None else float(default_dt)
        self.feature_names = checked_names(feature_names, self.input_size, "feature_names")
        self.output_names = checked_names(output_names, self.head.out_features, "output_names")
        self.name = str(name)
        self.metadata = dict(metadata or {})
        mean, std, self.normalized = affine_stats(input_mean, input_std, input_size, "input")
        self.register_buffer("input_mean", mean, persistent=False)
        self.register_buffer("input_std", std, persistent=False)
        self.version: str | None = None  # content hash; set when saved or loaded as an artifact

    # -- sizes and state ---------------------------------------------------------------------
    @property
    def state_size(self) -> int:
        return self.hidden_size

    @property
    def output_size(self) -> int:
        return self.head.out_features

    def init_state(self, n: int, device: torch.device | str | None = None) -> Tensor:
        p = next(self.parameters())
        return torch.zeros(n, self.state_size, dtype=p.dtype, device=device or p.device)

    def output_of(self, h: Tensor) -> Tensor:
        """The recurrent output ``[B, H]`` of states ``h`` (before the head)."""
        return h[:, : self.hidden_size]

    def present(self, y: Tensor) -> Tensor:
        return self.head.present(y)

    # -- stepping ----------------------------------------------------------------------------
    def cell(self, x: Tensor, h: Tensor, dt: Tensor) -> Tensor:
        """One event: normalised ``x[B,F]``, ``h[B,S]``, ``dt[B,1]`` model units -> ``h'``."""
        raise NotImplementedError

    def run(self, x: Tensor, h: Tensor, dt: Tensor) -> tuple[Tensor, Tensor]:
        """All steps without a mask: ``(out[B,T,H], h_T)``. Subclasses may fuse this."""
        outs = []
        for t in range(x.shape[1]):
            h = self.cell(x[:, t], h, dt[:, t : t + 1])
            outs.append(self.output_of(h))
        return torch.stack(outs, dim=1), h

    def forward(
        self,
        x: Tensor,
        dt: ElapsedLike | None = None,
        h0: Tensor | None = None,
        mask: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """``(x[B,T,F], dt[B,T] seconds | None, h0, mask[B,T]) -> (y[B,T,O], h_T)``."""
        if x.dim() != 3 or x.shape[2] != self.input_size:
            raise ValueError(f"x must be [B, T, {self.input_size}]; got {list(x.shape)}")
        B, T = x.shape[0], x.shape[1]
        h = self.init_state(B, device=x.device) if h0 is None else h0
        if h.shape != (B, self.state_size):
            raise ValueError(f"h0 must be [{B}, {self.state_size}]; got {list(h.shape)}")
        if mask is not None and (mask.shape != (B, T) or mask.dtype != torch.bool):
            raise ValueError(f"mask must be a bool tensor [{B}, {T}]")
        if dt is None:
            dt_units = torch.ones(B, T, dtype=h.dtype, device=x.device)
        else:
            dt_s = elapsed_for_sequence(dt, B, T, dtype=torch.float64, device=x.device)
            dt_units = (dt_s / self.time_unit).to(h.dtype)
        xn = x
        if self.normalized:
            xn = (x - self.input_mean.to(x.dtype)) / self.input_std.to(x.dtype)
        if mask is None:
            out, h = self.run(xn, h, dt_units)
        else:
            outs = []
            for t in range(T):
                h_new = self.cell(xn[:, t], h, dt_units[:, t : t + 1])
                h = torch.where(mask[:, t : t + 1], h_new, h)
                outs.append(self.output_of(h))
            out = torch.stack(outs, dim=1)
        return self.head(out), h

    def step(self, x: Tensor, dt: ElapsedLike, h: Tensor) -> tuple[Tensor, Tensor]:
        """One event per stream: ``(x[n,F], dt[n] seconds, h[n,S]) -> (y[n,O], h')``."""
        d = torch.as_tensor(dt, dtype=torch.float64, device=x.device)
        d = d.expand(x.shape[0]) if d.dim() == 0 else d.reshape(x.shape[0])
        y, h_new = self(x[:, None], d[:, None], h)
        return y[:, 0], h_new

    # -- configuration -----------------------------------------------------------------------
    def options(self) -> dict[str, Any]:
        return {}

    def get_config(self) -> dict[str, Any]:
        return {
            "type": "baseline",
            "kind": self.kind,
            "input_size": self.input_size,
            "hidden_size": self.hidden_size,
            "options": self.options(),
            "head": self.head.get_config(),
            "normalization": {
                "input_mean": self.input_mean.tolist() if self.normalized else None,
                "input_std": self.input_std.tolist() if self.normalized else None,
            },
            "time_unit": self.time_unit,
            "default_dt": self.default_dt,
            "feature_names": self.feature_names,
            "output_names": self.output_names,
            "name": self.name,
            "metadata": self.metadata,
        }


class LSTMBaseline(RecurrentBaseline):
    kind = "lstm"

    def __init__(self, input_size: int, hidden_size: int, *args: Any, **kwargs: Any) -> None:
        super().__init__(input_size, hidden_size, *args, **kwargs)
        self.rnn = nn.LSTM(input_size, hidden_size, batch_first=True)

    @property
    def state_size(self) -> int:
        return 2 * self.hidden_size

    rnn: nn.LSTM

    def _split(self, h: Tensor) -> tuple[Tensor, Tensor]:
        H = self.hidden_size
        return h[None, :, :H].contiguous(), h[None, :, H:].contiguous()

    def cell(self, x: Tensor, h: Tensor, dt: Tensor) -> Tensor:
        _, (hn, cn) = self.rnn(x[:, None], self._split(h))
        return torch.cat([hn[0], cn[0]], dim=1)

    def run(self, x: Tensor, h: Tensor, dt: Tensor) -> tuple[Tensor, Tensor]:
        out, (hn, cn) = self.rnn(x, self._split(h))
        return out, torch.cat([hn[0], cn[0]], dim=1)


class GRUBaseline(RecurrentBaseline):
    kind = "gru"

    def __init__(self, input_size: int, hidden_size: int, *args: Any, **kwargs: Any) -> None:
        super().__init__(input_size, hidden_size, *args, **kwargs)
        self.rnn = nn.GRU(input_size + int(self.uses_dt), hidden_size, batch_first=True)

    rnn: nn.GRU

    def _inputs(self, x: Tensor, dt: Tensor) -> Tensor:
        return x

    def cell(self, x: Tensor, h: Tensor, dt: Tensor) -> Tensor:
        _, hn = self.rnn(self._inputs(x[:, None], dt), h[None].contiguous())
        return hn[0]

    def run(self, x: Tensor, h: Tensor, dt: Tensor) -> tuple[Tensor, Tensor]:
        out, hn = self.rnn(self._inputs(x, dt), h[None].contiguous())
        return out, hn[0]


class GRUDtBaseline(GRUBaseline):
    """A GRU with the elapsed time (model units) as one more input."""

    kind = "gru_dt"
    uses_dt = True

    def _inputs(self, x: Tensor, dt: Tensor) -> Tensor:
        return torch.cat([x, dt[..., None].to(x.dtype)], dim=-1)


class GRUDBaseline(RecurrentBaseline):
    """GRU-D-style: the state decays towards zero over the elapsed time, then a GRU update."""

    kind = "gru_d"
    uses_dt = True

    def __init__(self, input_size: int, hidden_size: int, *args: Any, **kwargs: Any) -> None:
        super().__init__(input_size, hidden_size, *args, **kwargs)
        self.decay = nn.Linear(1, hidden_size)
        self.gru = nn.GRUCell(input_size, hidden_size)

    def cell(self, x: Tensor, h: Tensor, dt: Tensor) -> Tensor:
        gamma = torch.exp(-torch.relu(self.decay(dt.to(x.dtype))))
        return self.gru(x, gamma * h)


class ODERNNBaseline(RecurrentBaseline):
    """ODE-RNN: an autonomous neural ODE between events (fixed-step RK4), a GRU update at them."""

    kind = "ode_rnn"
    uses_dt = True

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        *args: Any,
        ode_steps: int = 2,
        ode_hidden: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(input_size, hidden_size, *args, **kwargs)
        if ode_steps < 1:
            raise ValueError(f"ode_steps must be >= 1; got {ode_steps}")
        self.ode_steps = int(ode_steps)
        self.ode_hidden = int(ode_hidden or hidden_size)
        self.f = nn.Sequential(
            nn.Linear(hidden_size, self.ode_hidden),
            nn.Tanh(),
            nn.Linear(self.ode_hidden, hidden_size),
        )
        self.gru = nn.GRUCell(input_size, hidden_size)

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

    def cell(self, x: Tensor, h: Tensor, dt: Tensor) -> Tensor:
        return self.gru(x, self.evolve(h, dt))


BASELINES: dict[str, type[RecurrentBaseline]] = {
    cls.kind: cls
    for cls in (LSTMBaseline, GRUBaseline, GRUDtBaseline, GRUDBaseline, ODERNNBaseline)
}


def build_baseline(
    kind: str, input_size: int, hidden_size: int, head: ReadoutHead | None = None, **kwargs: Any
) -> RecurrentBaseline:
    """The registered baseline ``kind``; an unknown kind lists the valid ones."""
    cls = BASELINES.get(kind)
    if cls is None:
        raise ValueError(f"unknown baseline {kind!r}; valid: {', '.join(sorted(BASELINES))}")
    return cls(input_size, hidden_size, head, **kwargs)


def baseline_from_config(config: dict[str, Any]) -> RecurrentBaseline:
    """Rebuild a baseline (same class) from :meth:`RecurrentBaseline.get_config`."""
    if config.get("type") != "baseline":
        raise ValueError(f"not a baseline config (type {config.get('type')!r})")
    norm = config.get("normalization") or {}
    return build_baseline(
        config["kind"],
        int(config["input_size"]),
        int(config["hidden_size"]),
        ReadoutHead.from_config(config["head"]),
        input_mean=norm.get("input_mean"),
        input_std=norm.get("input_std"),
        time_unit=float(config.get("time_unit", 1.0)),
        default_dt=config.get("default_dt"),
        feature_names=config.get("feature_names"),
        output_names=config.get("output_names"),
        name=config.get("name", "baseline"),
        metadata=config.get("metadata"),
        **(config.get("options") or {}),
    )
