"""The one boundary where elapsed time (Δt) is checked and shaped.

Dtype rule for time: absolute timestamps are float64 seconds since the Unix epoch (float32 has a
spacing of 128 s at 1.7e9 s, so it cannot hold them); differences are taken in float64 and only
then cast to the compute dtype of the cell, where they are small numbers in model time units.

Shapes: a step takes Δt per stream and returns it as ``[B, 1]`` so that it broadcasts over the
units of every stream's own row. A batch dimension is never squeezed: squeezing ``[B, 1]`` to
``[B]`` is what makes ncps broadcast Δt across units (its issues 81-83).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

ElapsedLike = float | int | Tensor
_READ_AS_LIST = 16  # at most this many Δt on CPU are checked in Python (see check_elapsed)


def check_elapsed(dt: Tensor, what: str = "elapsed time") -> None:
    """Raise ``ValueError`` unless every Δt is finite and non-negative."""
    n = dt.numel()
    if n == 0:
        return
    if n <= _READ_AS_LIST and dt.is_cpu:
        # A few streams on CPU (a single event, the common serving case): reading the values
        # costs a fraction of a reduction and two scalar reads. NaN fails `0 <= v`.
        values = dt.tolist() if dt.dim() == 1 else dt.reshape(-1).tolist()
        if all(0 <= v < math.inf for v in values):
            return
    else:
        # One reduction: NaN propagates through min/max and fails both tests.
        lo, hi = (float(v) for v in torch.aminmax(dt))
        if lo >= 0 and math.isfinite(hi):
            return
    if not bool(torch.isfinite(dt).all()):
        raise ValueError(f"{what} must be finite; got NaN or infinity")
    raise ValueError(f"{what} must be >= 0; got {float(dt.min())}")


def elapsed_for_step(
    dt: ElapsedLike,
    batch: int,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    check: bool = True,
) -> Tensor:
    """Normalise a step's Δt to ``[batch, 1]``.

    Accepts a Python number or 0-d tensor (the same Δt for every stream), ``[batch]`` or
    ``[batch, 1]``. Anything else is ambiguous and refused.
    """
    t = torch.as_tensor(dt, dtype=dtype, device=device)
    dim = t.dim()
    if not (dim == 0 or (dim == 1 and t.shape[0] == batch) or t.shape == (batch, 1)):
        raise ValueError(
            f"elapsed time for a step of {batch} streams must be a number, [{batch}] or "
            f"[{batch}, 1]; got shape {list(t.shape)}"
        )
    if check:
        check_elapsed(t)  # before shaping: the same values, and a 0-d Δt is one value
    if dim == 0:
        return t.expand(batch, 1)
    return t.unsqueeze(1) if dim == 1 else t


def elapsed_for_sequence(
    dt: ElapsedLike | None,
    batch: int,
    steps: int,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    check: bool = True,
) -> Tensor:
    """Normalise a sequence's Δt to ``[batch, steps]``.

    ``None`` means one model time unit per step. Accepts a number or 0-d tensor, ``[batch, steps]``
    or ``[batch, steps, 1]``. A 1-d ``[steps]`` is refused: it is ambiguous when batch == steps.
    """
    if dt is None:
        return torch.ones(batch, steps, dtype=dtype, device=device)
    t = torch.as_tensor(dt, dtype=dtype, device=device)
    if t.dim() == 0:
        t = t.expand(batch, steps)
    elif t.dim() == 3 and t.shape == (batch, steps, 1):
        t = t[..., 0]
    elif not (t.dim() == 2 and t.shape == (batch, steps)):
        raise ValueError(
            f"elapsed time for a sequence of {batch} streams x {steps} steps must be a number, "
            f"[{batch}, {steps}] or [{batch}, {steps}, 1]; got shape {list(t.shape)}"
        )
    if check:
        check_elapsed(t)
    return t
