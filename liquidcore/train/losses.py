"""Losses and metrics over the scored steps of a batch (pure functions and a plain accumulator).

The scored steps are every valid step (``loss_on="all"``) or the last valid step of each window
(``"last"``); padding (``mask`` False) is never scored. The regression loss is the MSE of
``(y - target) / scale``: with ``scale`` the head's target std this is the MSE of standardised
targets, with ones it is the plain MSE (the Walker2d protocol). Metrics are in target units.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor


def last_valid_index(mask: Tensor | None, B: int, T: int, device: torch.device) -> Tensor:
    """Index ``[B]`` of each row's last True step (``T - 1`` without a mask)."""
    if mask is None:
        return torch.full((B,), T - 1, dtype=torch.long, device=device)
    steps = torch.arange(T, device=device).expand(B, T)
    return torch.where(mask, steps, torch.full_like(steps, -1)).max(dim=1).values.clamp_min(0)


def scored(y: Tensor, target: Tensor, mask: Tensor | None, loss_on: str) -> tuple[Tensor, Tensor]:
    """Predictions ``[N, O]`` and targets (``[N, O]`` or ``[N]``) at the scored steps."""
    B, T = y.shape[0], y.shape[1]
    if loss_on == "last":
        idx = last_valid_index(mask, B, T, y.device)
        rows = torch.arange(B, device=y.device)
        y_sel = y[rows, idx]
        t_sel = target if target.dim() == 1 else target[rows, idx]
        return y_sel, t_sel
    if loss_on != "all":
        raise ValueError(f"unknown loss_on {loss_on!r}; valid: all, last")
    if target.dim() == 1:
        raise ValueError("one target per window needs loss_on='last'")
    if mask is None:
        return y.reshape(B * T, -1), target.reshape(B * T, *target.shape[2:])
    return y[mask], target[mask]


def sequence_loss(
    y: Tensor,
    target: Tensor,
    mask: Tensor | None,
    *,
    task: str,
    loss_on: str,
    scale: Tensor | None = None,
) -> Tensor:
    """The training loss of a batch (a scalar)."""
    y_sel, t_sel = scored(y, target, mask, loss_on)
    if task == "classification":
        return F.cross_entropy(y_sel, t_sel.long())
    diff = y_sel - t_sel.to(y_sel.dtype)
    if scale is not None:
        diff = diff / scale.to(diff.dtype)
    return (diff * diff).mean()


@dataclass
class MetricAccumulator:
    """Sums over batches; :meth:`result` gives loss and MSE/MAE or accuracy/macro-F1."""

    task: str
    n_outputs: int
    loss_sum: float = 0.0
    loss_count: int = 0
    sq_sum: float = 0.0
    abs_sum: float = 0.0
    elements: int = 0
    confusion: Tensor | None = field(default=None, repr=False)

    def add(self, y_sel: Tensor, t_sel: Tensor, loss: Tensor) -> None:
        n = int(y_sel.shape[0])
        if n == 0:
            return
        self.loss_sum += float(loss) * n
        self.loss_count += n
        if self.task == "classification":
            pred = y_sel.argmax(dim=-1).cpu()
            true = t_sel.long().cpu()
            k = self.n_outputs
            cm = torch.bincount(true * k + pred, minlength=k * k).reshape(k, k)
            self.confusion = cm if self.confusion is None else self.confusion + cm
        else:
            diff = (y_sel.double() - t_sel.double()).detach()
            self.sq_sum += float((diff * diff).sum())
            self.abs_sum += float(diff.abs().sum())
            self.elements += int(diff.numel())

    def result(self) -> dict[str, float]:
        out = {"loss": self.loss_sum / self.loss_count if self.loss_count else math.nan}
        if self.task == "classification":
            cm = self.confusion if self.confusion is not None else torch.zeros(1, 1)
            total = float(cm.sum())
            out["accuracy"] = float(cm.diag().sum()) / total if total else math.nan
            out["f1"] = macro_f1(cm)
        else:
            out["mse"] = self.sq_sum / self.elements if self.elements else math.nan
            out["mae"] = self.abs_sum / self.elements if self.elements else math.nan
        return out


def macro_f1(confusion: Tensor) -> float:
    """Macro-averaged F1 over the classes that occur (as true or predicted labels)."""
    cm = confusion.double()
    tp = cm.diag()
    support = cm.sum(dim=1)
    predicted = cm.sum(dim=0)
    present = (support + predicted) > 0
    if not bool(present.any()):
        return math.nan
    denom = support + predicted
    f1 = torch.where(denom > 0, 2 * tp / denom.clamp_min(1e-12), torch.zeros_like(tp))
    return float(f1[present].mean())


HIGHER_IS_BETTER = {"accuracy": True, "f1": True, "loss": False, "mse": False, "mae": False}


def is_better(metric: str, value: float, best: float | None) -> bool:
    if not math.isfinite(value):
        return False
    if best is None:
        return True
    return value > best if HIGHER_IS_BETTER[metric] else value < best
