"""Synapse sets of the LTC kernels and their currents.

Layout. Kernels work *unit-major*: a state is ``[H, B]`` (one row per unit, streams along the
row), a step's drive ``[2H, B]`` (``[A; Bd]`` parts, see :mod:`liquidcore.functional.ltc_step`).
Gathering the synapses' sources is then a copy of rows, and the per-destination sums are CSR
sums of rows, which ``embedding_bag`` computes (FBGEMM on CPU). On ``AutoNCP(64, 8)`` with B
from 1 to 4096 it beat ``index_add_``, a COO ``sparse.mm``, ``scatter_add_`` and a one-hot
matmul by 3-40×.

Synapse sets come in two forms (:data:`Synapses`): :class:`DenseSynapses`, ``[S, H]`` matrices
computed with ncps's formula (the reference, and what exporters see), and
:class:`SparseSynapses`, the ``E`` active synapses gathered and packed
(:func:`liquidcore.functional.ltc_fold.sparse_synapses`), sorted by ``(dst, src)``, with their
:class:`SynapseIndex`.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from liquidcore.functional.tracing import is_tracing


class SynapseIndex(NamedTuple):
    """Index tensors (int64) of ``E`` synapses from ``S`` sources into ``H`` units, sorted by
    ``(dst, src)``; built once by :func:`synapse_index`."""

    src: Tensor  # [E] source of each synapse
    dst: Tensor  # [E] destination of each synapse (non-decreasing)
    flat: Tensor  # [E] src·H + dst: position in the dense [S, H] parameter matrices
    pair_input: Tensor  # [2E] (src_e, S) interleaved: x_e = sigma_e·v[src_e] + bias_e·1
    pair_offsets: Tensor  # [E] 0, 2, 4, ...: bags of two
    reduce_input: Tensor  # [2E] 0..E-1 twice: rows of the activations
    reduce_offsets: Tensor  # [2H] start of each destination's synapses, then the same + E
    by_src: Tensor  # [E] synapse ids sorted by (src, dst)
    src_offsets: Tensor  # [S] start of each source's synapses in ``by_src``
    dst2: Tensor  # [2E] (dst, H + dst): rows of [∂L/∂A; ∂L/∂Bd] each synapse feeds


def synapse_index(src: Tensor, dst: Tensor, n_src: int, n_dst: int) -> SynapseIndex:
    """The :class:`SynapseIndex` of the synapses ``src[e] -> dst[e]`` (any order, no repeats)."""
    src = torch.as_tensor(src, dtype=torch.int64).reshape(-1)
    dst = torch.as_tensor(dst, dtype=torch.int64).reshape(-1)
    if src.shape != dst.shape:
        raise ValueError(f"src and dst must have the same length; got {len(src)} and {len(dst)}")
    order = torch.argsort(dst * n_src + src)
    src, dst = src[order], dst[order]
    E = src.numel()
    ids = torch.arange(E, dtype=torch.int64, device=src.device)
    starts = torch.searchsorted(dst, torch.arange(n_dst, device=src.device))
    by_src = torch.argsort(src * n_dst + dst)
    src_starts = torch.searchsorted(src[by_src], torch.arange(n_src, device=src.device))
    return SynapseIndex(
        src=src,
        dst=dst,
        flat=src * n_dst + dst,
        pair_input=torch.stack([src, torch.full_like(src, n_src)], 1).reshape(-1),
        pair_offsets=ids * 2,
        reduce_input=torch.cat([ids, ids]),
        reduce_offsets=torch.cat([starts, starts + E]),
        by_src=by_src,
        src_offsets=src_starts,
        dst2=torch.cat([dst, dst + n_dst]),
    )


class DenseSynapses(NamedTuple):
    """All ``S·H`` synapses as ``[S, H]`` matrices (source along dim 0, ncps's layout); ``w``
    already made positive and masked."""

    sigma: Tensor
    mu: Tensor
    w: Tensor
    erev: Tensor


class SparseSynapses(NamedTuple):
    """The ``E`` active synapses, packed for the kernels (in the order of ``idx``)."""

    idx: SynapseIndex
    pair_w: Tensor  # [2E] (sigma_e, -sigma_e·mu_e) interleaved: x_e = sigma_e·v[src_e] + bias_e
    reduce_w: Tensor  # [2E] (w_e·erev_e for all e, then w_e for all e)


Synapses = DenseSynapses | SparseSynapses


def embedding_sum(weight: Tensor, input: Tensor, offsets: Tensor, psw: Tensor) -> Tensor:
    """``out[k] = Σ_{j in bag k} psw[j]·weight[input[j]]`` (a CSR row sum; autograd-friendly)."""
    return F.embedding_bag(input, weight, offsets, mode="sum", per_sample_weights=psw)


def raw_embedding_sum(weight: Tensor, input: Tensor, offsets: Tensor, psw: Tensor) -> Tensor:
    """As :func:`embedding_sum` without the Python-side argument checks (for the fused loops)."""
    return torch.embedding_bag(weight, input, offsets, False, 0, False, psw, False, None)[0]


def currents(v: Tensor, syn: Synapses) -> Tensor:
    """Synaptic terms ``[Σ w σ erev; Σ w σ]`` (``[2H, N]``) of source activity ``v[S, N]``.

    Out of place and differentiable when autograd needs it; in place on its own intermediates
    otherwise.
    """
    if isinstance(syn, DenseSynapses):  # ncps's formula, unit-major: [S, H, N]
        y = torch.sigmoid((v[:, None, :] - syn.mu[:, :, None]) * syn.sigma[:, :, None])
        act = y * syn.w[:, :, None]
        return torch.cat([(act * syn.erev[:, :, None]).sum(0), act.sum(0)])
    idx = syn.idx
    grad = torch.is_grad_enabled() and any(t.requires_grad for t in (v, syn.pair_w, syn.reduce_w))
    if grad or is_tracing():
        sigma, bias = syn.pair_w[0::2, None], syn.pair_w[1::2, None]
        y = torch.sigmoid(torch.addcmul(bias, v.index_select(0, idx.src), sigma))
        return embedding_sum(y, idx.reduce_input, idx.reduce_offsets, syn.reduce_w)
    aug = torch.cat([v, v.new_ones(1, v.shape[1])])
    y = raw_embedding_sum(aug, idx.pair_input, idx.pair_offsets, syn.pair_w).sigmoid_()
    return raw_embedding_sum(y, idx.reduce_input, idx.reduce_offsets, syn.reduce_w)
