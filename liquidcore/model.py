"""A servable liquid model: input normalisation + cell + readout head + time unit + names.

Δt at this API is in seconds. The model converts it once to model time units
(``dt / time_unit``); ``time_unit`` is the number of seconds one model time unit stands for
(the spacing of the data the model was trained on). With ``time_unit = 1`` seconds and model
units coincide, which is how parity with ncps is stated.

The serving API is pure: ``init_state``, ``step``, ``advance`` and ``output_of`` take a state and
return a new one; nothing is mutated. ``forward`` is the sequence form used for training and
backfill; stepping ``T`` events one at a time equals ``forward`` on the sequence.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from liquidcore.cells.base import LiquidCell
from liquidcore.heads import ReadoutHead
from liquidcore.normalization import affine_stats, checked_names
from liquidcore.timing import ElapsedLike, elapsed_for_sequence, elapsed_for_step


class LiquidModel(nn.Module):
    """Input normalisation, a liquid cell and a readout head, with time and names attached."""

    input_mean: Tensor
    input_std: Tensor

    def __init__(
        self,
        cell: LiquidCell,
        head: ReadoutHead | None = None,
        *,
        input_mean: Sequence[float] | None = None,
        input_std: Sequence[float] | None = None,
        time_unit: float = 1.0,
        default_dt: float | None = None,
        feature_names: Sequence[str] | None = None,
        output_names: Sequence[str] | None = None,
        name: str = "model",
        metadata: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if not (math.isfinite(time_unit) and time_unit > 0):
            raise ValueError(f"time_unit must be a finite number of seconds > 0; got {time_unit}")
        default_dt = time_unit if default_dt is None else float(default_dt)
        if not (math.isfinite(default_dt) and default_dt >= 0):
            raise ValueError(f"default_dt must be finite seconds >= 0; got {default_dt}")
        head = head if head is not None else ReadoutHead(cell.output_size)
        if head.in_features != cell.output_size:
            raise ValueError(
                f"head takes {head.in_features} inputs but the cell outputs {cell.output_size}"
            )
        self.cell = cell
        self.head = head
        self.time_unit = float(time_unit)
        self.default_dt = default_dt
        self.name = str(name)
        self.metadata = dict(metadata or {})
        self.feature_names = checked_names(feature_names, cell.input_size, "feature_names")
        self.output_names = checked_names(output_names, head.out_features, "output_names")
        mean, std, self.normalized = affine_stats(input_mean, input_std, cell.input_size, "input")
        # Part of the JSON config (readable, exact for float32), so not saved with the weights.
        self.register_buffer("input_mean", mean, persistent=False)
        self.register_buffer("input_std", std, persistent=False)
        self.version: str | None = None  # content hash; set by liquidcore.checkpoint

    # -- sizes ------------------------------------------------------------------------------
    @property
    def input_size(self) -> int:
        return self.cell.input_size

    @property
    def state_size(self) -> int:
        return self.cell.state_size

    @property
    def output_size(self) -> int:
        return self.head.out_features

    def _dtype_device(self) -> tuple[torch.dtype, torch.device]:
        p = next(self.parameters(), None)
        if p is None:
            return torch.float32, torch.device("cpu")
        return p.dtype, p.device

    # -- serving API ------------------------------------------------------------------------
    def init_state(self, n: int, device: torch.device | str | None = None) -> Tensor:
        """States of ``n`` fresh streams, ``[n, state_size]``."""
        if n < 0:
            raise ValueError(f"number of streams must be >= 0; got {n}")
        dtype, own = self._dtype_device()
        return self.cell.init_state(n, device=device or own, dtype=dtype)

    def _check_step(self, cell: LiquidCell, x: Tensor, h: Tensor) -> None:
        # The cell passed in: each self.cell is a Module.__getattr__ lookup (on the step path).
        if x.dim() != 2 or x.shape[1] != cell.input_size:
            raise ValueError(f"x must be [n, {cell.input_size}]; got {list(x.shape)}")
        if h.shape != (x.shape[0], cell.state_size):
            raise ValueError(
                f"h must be [{x.shape[0]}, {cell.state_size}] to match x; got {list(h.shape)}"
            )

    def normalize(self, x: Tensor) -> Tensor:
        if not self.normalized:
            return x
        return (x - self.input_mean.to(x.dtype)) / self.input_std.to(x.dtype)

    def step(self, x: Tensor, dt: ElapsedLike, h: Tensor) -> tuple[Tensor, Tensor]:
        """One event on each of ``n`` streams: ``(x[n,F], dt[n] seconds, h[n,S]) -> (y, h')``."""
        cell = self.cell
        self._check_step(cell, x, h)
        out, h_new = cell(self.normalize(x), h, self._step_units(dt, x.shape[0], h))
        return self.head(out), h_new

    def _step_units(self, dt: ElapsedLike, n: int, h: Tensor) -> Tensor:
        """Δt in seconds -> ``[n, 1]`` model units in the state's dtype (the timing rule: the
        division by ``time_unit`` happens in float64; with ``time_unit = 1`` there is none)."""
        if self.time_unit == 1.0:
            return elapsed_for_step(dt, n, dtype=h.dtype, device=h.device)
        seconds = elapsed_for_step(dt, n, dtype=torch.float64, device=h.device)
        return (seconds / self.time_unit).to(h.dtype)

    def advance(self, h: Tensor, dt: ElapsedLike, x_hold: Tensor) -> Tensor:
        """Evolve states by ``dt`` seconds with the input held at ``x_hold``."""
        return self.step(x_hold, dt, h)[1]

    def output_of(self, h: Tensor) -> Tensor:
        """The (raw) outputs that states ``h`` give, ``[n, O]``."""
        return self.head(self.cell.output_of(h))

    def present(self, y: Tensor) -> Tensor:
        """What users see: class probabilities for a classification head, else ``y``."""
        return self.head.present(y)

    # -- sequence API -----------------------------------------------------------------------
    def forward(
        self,
        x: Tensor,
        dt: ElapsedLike | None = None,
        h0: Tensor | None = None,
        mask: Tensor | None = None,
        reset: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """``(x[B,T,F], dt[B,T] seconds | None, h0, mask[B,T], reset[B,T]) -> (y[B,T,O], h_T)``.

        ``dt=None`` means one model time unit per step. ``mask`` False marks padding: the state
        is kept and the output is what that state gives. ``reset`` True re-initialises a stream's
        state just before that step (a gap or a model change in the middle of a backfill).
        """
        if x.dim() != 3 or x.shape[2] != self.input_size:
            raise ValueError(f"x must be [B, T, {self.input_size}]; got {list(x.shape)}")
        B, T = x.shape[0], x.shape[1]
        h = self.init_state(B, device=x.device) if h0 is None else h0
        if h.shape != (B, self.state_size):
            raise ValueError(f"h0 must be [{B}, {self.state_size}]; got {list(h.shape)}")
        for name, m in (("mask", mask), ("reset", reset)):
            if m is not None and (m.shape != (B, T) or m.dtype != torch.bool):
                raise ValueError(
                    f"{name} must be a bool tensor [{B}, {T}]; got {m.dtype} {list(m.shape)}"
                )
        if dt is None:
            dt_units = torch.ones(B, T, dtype=h.dtype, device=x.device)
        else:
            dt_s = elapsed_for_sequence(dt, B, T, dtype=torch.float64, device=x.device)
            dt_units = (dt_s / self.time_unit).to(h.dtype)
        xn = self.normalize(x)
        if reset is not None and bool(reset[:, 1:].any()):
            return self._forward_with_resets(xn, dt_units, h, mask, reset)
        if reset is not None:  # a reset at the first step is just a fresh initial state
            h = torch.where(reset[:, :1], self.init_state(B, device=x.device), h)
        out, h_T = self.cell.forward_sequence(xn, h, dt_units, mask)
        return self.head(out), h_T

    def _forward_with_resets(
        self, xn: Tensor, dt: Tensor, h: Tensor, mask: Tensor | None, reset: Tensor
    ) -> tuple[Tensor, Tensor]:
        fresh = self.init_state(xn.shape[0], device=xn.device)
        outs = []
        for t in range(xn.shape[1]):
            h = torch.where(reset[:, t : t + 1], fresh, h)
            out, h_new = self.cell(xn[:, t], h, dt[:, t : t + 1])
            if mask is not None:
                keep = mask[:, t : t + 1]
                h_new = torch.where(keep, h_new, h)
                out = torch.where(keep, out, self.cell.output_of(h))
            h = h_new
            outs.append(out)
        return self.head(torch.stack(outs, dim=1)), h

    # -- configuration ----------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "cell": self.cell.get_config(),
            "head": self.head.get_config(),
            "normalization": {
                "input_mean": self.input_mean.tolist() if self.normalized else None,
                "input_std": self.input_std.tolist() if self.normalized else None,
            },
            "time_unit": self.time_unit,
            "default_dt": self.default_dt,
            "feature_names": self.feature_names,
            "output_names": self.output_names,
            "metadata": self.metadata,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> LiquidModel:
        from liquidcore.cells.registry import build_cell

        norm = config.get("normalization") or {}
        return cls(
            build_cell(config["cell"]),
            ReadoutHead.from_config(config["head"]),
            input_mean=norm.get("input_mean"),
            input_std=norm.get("input_std"),
            time_unit=config.get("time_unit", 1.0),
            default_dt=config.get("default_dt"),
            feature_names=config.get("feature_names"),
            output_names=config.get("output_names"),
            name=config.get("name", "model"),
            metadata=config.get("metadata"),
        )
