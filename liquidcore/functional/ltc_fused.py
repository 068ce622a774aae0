"""The fused semi-implicit LTC loop on sparse synapses: one autograd node, analytic backward.

The solver :func:`liquidcore.functional.ltc_unroll.semi_implicit` hands sparse synapse sets
here. On CPU in float32/float64 the loop runs in the native kernels of
:mod:`liquidcore.native.ltc` when they are available; the PyTorch code here is their reference
and the fallback (imports run one way: this module calls ``native``, never the reverse).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable

from liquidcore.functional.ltc_synapses import SparseSynapses, SynapseIndex, raw_embedding_sum
from liquidcore.native import ltc as native


def fused_semi_implicit(
    v0: Tensor, drive: Tensor, dt: Tensor, cu: Tensor, syn: SparseSynapses, unfolds: int
) -> Tensor:
    """The semi-implicit loop on sparse synapses; ``cu`` is ``unfolds·cm + tiny`` (``[H, 1]``).
    One autograd node when gradients are needed."""
    tensors = (v0, drive, dt, cu, syn.pair_w, syn.reduce_w)
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        out = FusedSemiImplicit.apply(*tensors, syn.idx, unfolds)
        assert isinstance(out, Tensor)
        return out
    with torch.no_grad():
        if native.supports(*tensors):
            return native.forward(tensors, syn.idx.src, syn.idx.reduce_offsets, unfolds)
        return fused_forward(*tensors, syn.idx, unfolds)


def _ones_row_buffer(n: int, like: Tensor) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
    """``n`` states ``[H + 1, B]`` whose last row is ones (the bias input of the gather):
    ``(full rows, the first H rows)``."""
    H, B = like.shape
    buf = like.new_empty(n, H + 1, B)
    buf[:, H] = 1.0
    return buf.unbind(0), buf[:, :H].unbind(0)


class _Substep(NamedTuple):
    """A sub-step's intermediates, as the backward needs them."""

    y: Tensor  # [E, B] synapse activations σ(x)
    r: Tensor  # [H, B] A - Bd·v
    Bd: Tensor  # [H, B]
    D: Tensor  # [H, B] cu + Δt·Bd
    q: Tensor  # [H, B] Δt/D


def _substep(
    full: Tensor,
    v: Tensor,
    v_next: Tensor,
    d: Tensor,
    h: Tensor,
    cu: Tensor,
    pair_w: Tensor,
    reduce_w: Tensor,
    idx: SynapseIndex,
) -> _Substep:
    """One sub-step, writing ``v'`` into ``v_next``. ``full`` is ``v`` with a row of ones."""
    H = v.shape[0]
    y = raw_embedding_sum(full, idx.pair_input, idx.pair_offsets, pair_w).sigmoid_()
    z = raw_embedding_sum(y, idx.reduce_input, idx.reduce_offsets, reduce_w).add_(d)
    A, Bd = z[:H], z[H:]
    D = torch.addcmul(cu, Bd, h)
    q = h / D
    r = A.addcmul_(Bd, v, value=-1.0)  # A - Bd·v, in place of A
    torch.addcmul(v, q, r, out=v_next)
    return _Substep(y, r, Bd, D, q)


def fused_forward(
    v0: Tensor,
    drive: Tensor,
    dt: Tensor,
    cu: Tensor,
    pair_w: Tensor,
    reduce_w: Tensor,
    idx: SynapseIndex,
    unfolds: int,
) -> Tensor:
    """States after each step, ``[T, H, B]``, through two ping-pong buffers."""
    full, vs = _ones_row_buffer(2, v0)
    vs[0].copy_(v0)
    out = v0.new_empty(drive.shape[0], *v0.shape)
    k = 0
    for d, h, o in zip(drive.unbind(0), dt.unbind(0), out.unbind(0), strict=True):
        for _ in range(unfolds):
            a, b = k % 2, (k + 1) % 2
            _substep(full[a], vs[a], vs[b], d, h, cu, pair_w, reduce_w, idx)
            k += 1
        o.copy_(vs[k % 2])
    return out


class FusedSemiImplicit(torch.autograd.Function):
    """The whole semi-implicit loop as one node, with the analytic backward.

    Per sub-step (``z = [A; Bd]``, ``D = cu + Δt·Bd``, ``q = Δt/D``, ``r = A - Bd·v``):
    ``v' = v + q·r``, so ``∂v'/∂A = q``, ``∂v'/∂Bd = -q·v'``, ``∂v'/∂v|direct = 1 - q·Bd``,
    ``∂v'/∂cu = -q·r/D`` and ``∂v'/∂Δt = r·cu/D²``; through ``A`` and ``Bd`` the gradient
    reaches the activations ``y = σ(x)``, ``x_e = sigma_e·v[src_e] + bias_e``.

    Memory: the forward keeps only the state after each step (its output). The backward
    recomputes one step's sub-steps at a time from that checkpoint, into buffers reused from
    step to step. Keeping every sub-step's activations instead (``T·unfolds·E·B`` numbers, 74 MB
    for the benchmark's B = 64, T = 100) was slower with glibc's default malloc, which returns
    such blocks to the kernel after every call so that each call page-faults them in again.
    """

    @staticmethod
    def forward(
        ctx: FunctionCtx,
        v0: Tensor,
        drive: Tensor,
        dt: Tensor,
        cu: Tensor,
        pair_w: Tensor,
        reduce_w: Tensor,
        idx: SynapseIndex,
        unfolds: int,
    ) -> Tensor:
        tensors = (v0, drive, dt, cu, pair_w, reduce_w)
        if native.supports(*tensors):
            out = native.forward(tensors, idx.src, idx.reduce_offsets, unfolds)
        else:
            out = fused_forward(*tensors, idx, unfolds)
        ctx.save_for_backward(v0, out, drive, dt, cu, pair_w, reduce_w)
        ctx.idx = idx  # type: ignore[attr-defined]
        ctx.unfolds = unfolds  # type: ignore[attr-defined]
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, g_out: Tensor) -> tuple[Tensor | None, ...]:
        v0, out, drive, dt, cu, pair_w, reduce_w = ctx.saved_tensors  # type: ignore[attr-defined]
        idx: SynapseIndex = ctx.idx  # type: ignore[attr-defined]
        U: int = ctx.unfolds  # type: ignore[attr-defined]
        need = ctx.needs_input_grad  # type: ignore[attr-defined]
        if native.supports(v0, out, drive, dt, cu, pair_w, reduce_w, g_out):
            saved = ctx.saved_tensors  # type: ignore[attr-defined]
            return native.backward(saved, idx.src, idx.reduce_offsets, U, g_out, need)
        T, H, B = g_out.shape
        E = idx.src.numel()
        # gz = [∂L/∂A; -∂L/∂Bd] (one multiplication fewer per sub-step; signs restored below).
        wr, w_neg = reduce_w[:E, None], -reduce_w[E:, None]
        src_w = pair_w[0::2][idx.by_src]
        full, vs = _ones_row_buffer(U + 1, v0)  # one step's sub-step states
        gzs = g_out.new_empty(U, 2 * H, B)
        gz_slots = [(gz, gz[:H], gz[H:]) for gz in gzs.unbind(0)]
        gathered = g_out.new_empty(2 * E, B)  # gz[dst], gz[H + dst]
        g_at_a, g_at_b = gathered[:E], gathered[E:]
        u = g_out.new_empty(E, B)  # v[src]
        g_drive = g_out.new_empty(T, 2 * H, B) if need[1] else None
        g_dt = g_out.new_zeros(T, 1, B) if need[2] else None
        acc_cu = g_out.new_zeros(H, B)  # Σ -∂L/∂cu
        acc_sigma = g_out.new_zeros(E, B)  # Σ gx·v[src]
        acc_bias = g_out.new_zeros(E, B)  # Σ gx
        acc_reduce = g_out.new_zeros(2, E, B)  # Σ y·gA[dst], Σ y·gB'[dst]
        g = g_out.new_zeros(H, B)
        for t in reversed(range(T)):
            g = g + g_out[t]
            d, h = drive[t], dt[t]
            vs[0].copy_(v0 if t == 0 else out[t - 1])
            tape = [
                _substep(full[i], vs[i], vs[i + 1], d, h, cu, pair_w, reduce_w, idx)
                for i in range(U)
            ]
            for i in reversed(range(U)):
                y, r, Bd, D, q = tape[i]
                gz, gA, gB = gz_slots[i]
                torch.mul(g, q, out=gA)
                torch.mul(gA, vs[i + 1], out=gB)
                acc_cu.addcdiv_(gA * r, D)  # gA·r first: 0 when Δt = 0, even if D is tiny
                if g_dt is not None:
                    g_dt[t] += (g * r / D * (cu / D)).sum(0, keepdim=True)
                torch.index_select(gz, 0, idx.dst2, out=gathered)
                gy = torch.mul(g_at_a, wr).addcmul_(g_at_b, w_neg)
                gx = torch.ops.aten.sigmoid_backward(gy, y)
                acc_reduce.addcmul_(gathered.view(2, E, B), y)
                torch.index_select(vs[i], 0, idx.src, out=u)
                acc_sigma.addcmul_(u, gx)
                acc_bias.add_(gx)
                gv = raw_embedding_sum(gx, idx.by_src, idx.src_offsets, src_w)
                g = gv.add_(g).addcmul_(gA, Bd, value=-1.0)
            if g_drive is not None:
                torch.sum(gzs, 0, out=g_drive[t])
        if g_drive is not None:
            g_drive[:, H:].neg_()
        g_cu = acc_cu.sum(1, keepdim=True).neg_() if need[3] else None
        g_pair = None
        if need[4]:
            g_pair = torch.stack([acc_sigma.sum(1), acc_bias.sum(1)], 1).reshape(-1)
        g_reduce = None
        if need[5]:
            g_reduce = acc_reduce.sum(2)
            g_reduce[1].neg_()
            g_reduce = g_reduce.reshape(-1)
        g_v0 = g if need[0] else None
        return (g_v0, g_drive, g_dt, g_cu, g_pair, g_reduce, None, None)
