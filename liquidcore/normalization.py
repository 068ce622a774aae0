"""Checked affine statistics and names: what a model's inputs and outputs carry beside weights."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def affine_stats(
    mean: Sequence[float] | None, std: Sequence[float] | None, size: int, what: str
) -> tuple[Tensor, Tensor, bool]:
    """``(mean, std, given)``: float32 tensors of ``size`` values (0 and 1 when not given).

    ``what`` names the pair in errors ("input" checks ``input_mean`` and ``input_std``).
    """
    m = torch.zeros(size) if mean is None else torch.tensor(mean)
    s = torch.ones(size) if std is None else torch.tensor(std)
    if m.shape != (size,) or s.shape != (size,):
        raise ValueError(
            f"{what}_mean and {what}_std need {size} values each; got "
            f"{list(m.shape)} and {list(s.shape)}"
        )
    if not bool(torch.isfinite(m).all() and torch.isfinite(s).all() and (s > 0).all()):
        raise ValueError(f"{what}_mean must be finite and {what}_std finite and > 0")
    return m.float(), s.float(), mean is not None or std is not None


def checked_names(names: Sequence[str] | None, size: int, what: str) -> list[str] | None:
    """``names`` as a list of ``size`` unique strings (or ``None``); ``ValueError`` otherwise."""
    if names is None:
        return None
    out = [str(n) for n in names]
    if len(out) != size:
        raise ValueError(f"{what} has {len(out)} names but the model has {size}")
    if len(set(out)) != len(out):
        raise ValueError(f"{what} names must be unique; got {out}")
    return out
