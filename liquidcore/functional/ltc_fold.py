"""Folding an LTC cell's stored parameters into what the kernels take (differentiable).

The cell keeps ncps's dense ``[S, H]`` parameters; a step needs the leak terms of the drive, the
capacitance, and the synapse sets: weights made positive and masked, and for the sparse path
the ``E`` active synapses gathered and packed. Without autograd the cell caches the result
(:class:`liquidcore.cells.fold_cache.FoldCache`).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from liquidcore.functional.ltc_synapses import (
    DenseSynapses,
    SparseSynapses,
    SynapseIndex,
    Synapses,
)


class LTCFolded(NamedTuple):
    """The kernels' view of an LTC cell."""

    leak: Tensor  # [2H]: gleak·vleak, gleak + ε (the leak part of the drive)
    cm: Tensor  # [H], non-negative
    recurrent: Synapses
    sensory: Synapses


def fold_leak(gleak: Tensor, vleak: Tensor, epsilon: float) -> Tensor:
    """``[gleak·vleak; gleak + ε]`` (``gleak`` already made positive): the leak's share of
    ``[A; Bd]``, with ncps's ``ε`` guard as a conductance towards 0."""
    return torch.cat([gleak * vleak, gleak + epsilon])


def sparse_synapses(
    sigma: Tensor, mu: Tensor, w: Tensor, erev: Tensor, index: SynapseIndex
) -> SparseSynapses:
    """Gather and pack the active synapses of ``[S, H]`` effective parameters (differentiable;
    ``w`` positive and masked)."""
    f = index.flat
    sigma, mu = sigma.reshape(-1)[f], mu.reshape(-1)[f]
    w, erev = w.reshape(-1)[f], erev.reshape(-1)[f]
    return SparseSynapses(
        index,
        torch.stack([sigma, -sigma * mu], 1).reshape(-1),
        torch.cat([w * erev, w]),
    )


def fold_synapses(
    sigma: Tensor, mu: Tensor, w: Tensor, erev: Tensor, mask: Tensor, index: SynapseIndex | None
) -> Synapses:
    """The synapse set of ``[S, H]`` parameters (``w`` already made positive) under ``mask``:
    packed sparse synapses with ``index``, dense matrices (ncps's formula) without."""
    w = w * mask
    if index is not None:
        return sparse_synapses(sigma, mu, w, erev, index)
    return DenseSynapses(sigma, mu, w, erev)
