"""What the trainer needs of a model: the sequence form of :class:`liquidcore.LiquidModel`.

Any ``nn.Module`` whose ``forward(x[B,T,F], dt[B,T] seconds | None, h0=None, mask=None)``
returns ``(y[B,T,O], h_T[B,S])`` can be trained and scored by the same harness, which is what
makes the baseline comparison fair (same windows, loss, optimiser and schedule).
``mask`` False marks padding: a model keeps its state there, and the harness never scores it.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from liquidcore.cells.base import outermost_cells


@runtime_checkable
class SequenceModel(Protocol):
    def forward(
        self,
        x: Tensor,
        dt: Tensor | None = None,
        h0: Tensor | None = None,
        mask: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]: ...


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) scalar parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_parameters_in_use(model: nn.Module) -> int:
    """Trainable parameters that can affect the output: ``count_parameters`` less the synapse
    parameters that a wiring masks out (stored densely, as ncps stores them)."""
    masked = sum(cell.masked_parameter_count() for cell in outermost_cells(model))
    return count_parameters(model) - masked


def loss_scale_of(model: nn.Module, n_outputs: int) -> Tensor:
    """Per-output scale of the regression loss: the head's target std when it de-normalises
    its outputs (so the loss is the MSE of standardised targets), else ones."""
    head = getattr(model, "head", None)
    if head is not None and bool(getattr(head, "scaled", False)):
        std = head.target_std
        if isinstance(std, Tensor) and std.shape == (n_outputs,):
            return std.detach().clone().float()
    return torch.ones(n_outputs)


def apply_constraints(model: nn.Module) -> None:
    """Project every liquid cell's parameters back into range after an optimiser step."""
    for m in model.modules():
        hook = getattr(m, "apply_constraints", None)
        if hook is not None and m is not model and callable(hook):
            hook()
