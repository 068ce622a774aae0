"""A gated CfC sequence (modes ``default`` and ``no_gate``) as one autograd node, for training.

Stepping a sequence in plain autograd records ~15 nodes per step, and each step's backward
computes every weight gradient as a product over the batch alone (``[4H, B] @ [B, N]`` at
B = 64: a short inner dimension, the least efficient shape there is), adds it into the running
sum, and undoes the per-step splits of the packed heads and of the inputs' share with
zero-filled copies. This node runs the step's operations (outputs equal stepping to float
round-off) and keeps each step's activations; its backward walks the steps only for what is
truly sequential, the gradient reaching each state (two products per step), and forms every
weight gradient as one product per chunk of ``CHUNK`` steps (``CHUNK·B`` rows).

The step it unrolls (folded weights, see :mod:`liquidcore.cells.cfc`)::

    z_0 = x_share_t + h @ first_h                       # x_share_t = x_t @ W_x + b, given
    z_k = (sigmoid(z_{k-1}) - 0.5) @ w_k.T + b_k         # rest[k - 1], k = 1..L; g = z_L
    s1, s2, σ = sigmoid(g_ff1), sigmoid(g_ff2), sigmoid(g_ta·Δt + g_tb)
    h' = gain·(2·lerp(s1, s2, σ) - 1)                     # default
    h' = gain·((2·s1 - 1) + σ·(2·s2 - 1))                 # no_gate
    h' = where(mask_t, h', h)                            # with a mask

(``g = [2·ff1 | 2·ff2 | t_b | t_a]``, the packed layout of :mod:`liquidcore.functional.cfc`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable

GATED_MODES = ("default", "no_gate")


def cfc_gated_sequence(
    x_share: Tensor,
    h0: Tensor,
    dt: Tensor,
    first_h: Tensor,
    rest: tuple[tuple[Tensor, Tensor], ...],
    *,
    mode: str,
    gain: float,
    mask: Tensor | None = None,
) -> Tensor:
    """The states after every step, ``[B, T, H]``; ``x_share [B, T, N]``, ``h0 [B, H]``,
    ``dt [B, T]``, ``first_h [H, N]``, ``rest`` the later ``(weight, bias)`` products (the
    packed heads last), ``mask [B, T]`` (bool) or ``None``."""
    if mode not in GATED_MODES:
        raise ValueError(f"mode must be one of {', '.join(GATED_MODES)}; got {mode!r}")
    flat = [t for layer in rest for t in layer]
    out = _GatedSequence.apply(x_share, h0, dt, first_h, mask, (mode, float(gain)), *flat)
    assert isinstance(out, Tensor)
    return out


CHUNK = 16  # steps per weight-gradient product in the backward (see _GatedSequence)


class _GatedSequence(torch.autograd.Function):
    """The forward writes each step's kept activations into time-major ``[T, B, ·]`` buffers
    (``out=`` operations, no per-step allocation), so the backward reads a chunk of steps as one
    contiguous ``[C·B, ·]`` view: no stacking copies. The backward forms the per-step factors of
    the heads' and backbone's derivatives for ``CHUNK`` steps at once (a few chunk-sized
    operations instead of ~10 small ones per step), leaving per step only what is sequential:
    the heads' gradient (one product of the state gradient with those factors), the products
    back through the backbone, and the state gradient (one ``addmm`` that also adds the output
    gradient of the step before).

    Memory: the buffers are sequence-sized (MBs at B = 64, T = 100), which glibc's default
    malloc maps afresh on every call, so each call page-faults them in: CPU time 37 ms per
    fwd+bwd of the benchmark instead of 31 with ``MALLOC_MMAP_THRESHOLD_`` set high (41 ms for
    the per-step-allocation version this replaced, either way)."""

    @staticmethod
    def forward(
        ctx: FunctionCtx,
        x_share: Tensor,
        h0: Tensor,
        dt: Tensor,
        first_h: Tensor,
        mask: Tensor | None,
        config: tuple[str, float],
        *flat: Tensor,
    ) -> Tensor:
        mode, gain = config
        weights, biases = flat[0::2], flat[1::2]
        B, H = h0.shape
        T = x_share.shape[1]
        keep_t_a = ctx.needs_input_grad[2]  # type: ignore[attr-defined]
        new = h0.new_empty
        states = new(T + 1, B, H)  # states[t]: the state step t reads
        states[0] = h0
        # us[k][t]: sigmoid - 0.5 of step t's product k, what rest[k] reads.
        us = [new(T, B, w.shape[1]) for w in weights]
        heads = new(T, B, 3 * H)  # sigmoid(ff1), sigmoid(ff2), the gate σ
        t_as = new(T, B, H) if keep_t_a else None
        zs = [new(B, first_h.shape[1]), *(new(B, w.shape[0]) for w in weights)]
        # F.linear(u, w, b) is addmm(b, u, w.t()); a bias already [B, out] is copied into the
        # result as one block instead of broadcast row by row.
        full_biases = [b.expand(B, -1).contiguous() for b in biases]
        weights_t = [w.t() for w in weights]
        # Per-step views taken once (a slice per step is a dispatch per step).
        dts = dt.t()[:, :, None].unbind(0)
        head_views = heads.view(T, B, 3, H)
        s1s, s2s, gates = (head_views[:, :, j].unbind(0) for j in range(3))
        z_l = zs[-1]
        t_b, t_a, z_heads = z_l[:, 2 * H : 3 * H], z_l[:, 3 * H :], z_l[:, : 3 * H]
        u_steps = [u.unbind(0) for u in us]
        head_steps, state_steps = heads.unbind(0), states.unbind(0)
        t_a_steps = t_as.unbind(0) if t_as is not None else None
        masks = mask.t()[:, :, None].unbind(0) if mask is not None else None
        for t, x_t in enumerate(x_share.unbind(1)):
            h = state_steps[t]
            z = torch.addmm(x_t, h, first_h, out=zs[0])
            for k, u in enumerate(u_steps):
                torch.sigmoid(z, out=u[t]).sub_(0.5)
                z = torch.addmm(full_biases[k], u[t], weights_t[k], out=zs[k + 1])
            if t_a_steps is not None:
                t_a_steps[t].copy_(t_a)
            t_b.addcmul_(t_a, dts[t])
            torch.sigmoid(z_heads, out=head_steps[t])
            h_new = state_steps[t + 1]
            if mode == "default":  # gain·(2·lerp(s1, s2, σ) - 1)
                torch.lerp(s1s[t], s2s[t], gates[t], out=h_new).mul_(2.0 * gain).sub_(gain)
            else:  # gain·((2·s1 - 1) + σ·(2·s2 - 1))
                torch.mul(s2s[t], 2.0, out=h_new).sub_(1.0).mul_(gates[t])
                h_new.add_(s1s[t], alpha=2.0).sub_(1.0).mul_(gain)
            if masks is not None:
                torch.where(masks[t], h_new, h, out=h_new)
        ctx.save_for_backward(dt, first_h, *flat)
        ctx.mask = mask  # type: ignore[attr-defined]
        ctx.steps = (states, us, heads, t_as)  # type: ignore[attr-defined]
        ctx.config = config  # type: ignore[attr-defined]
        # A batch-major copy, not a view of the buffer: callers may change it in place.
        return states[1:].transpose(0, 1).contiguous()

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, g_outs: Tensor) -> tuple[Tensor | None, ...]:
        mode, gain = ctx.config
        dt, first_h, *flat = ctx.saved_tensors
        mask = ctx.mask
        states, us, heads, t_as = ctx.steps
        del ctx.steps  # once_differentiable: no second backward needs them
        weights, L = flat[0::2], len(flat) // 2
        need = ctx.needs_input_grad
        B, T, H = g_outs.shape
        N = first_h.shape[1]
        first_t = first_h.t()
        C = min(CHUNK, T)
        new = g_outs.new_empty
        # dz[k]: the chunk's gradients of product k's result (dz[0]: the first product's, in
        # g_x itself when x_share needs one; dz[L]: the packed heads').
        g_x = new(T, B, N) if need[0] else None
        dz = [new(C, B, w.shape[0]) for w in weights]
        dz_first = g_x if g_x is not None else new(C, B, N)
        g_w = [g_outs.new_zeros(H, N), *(torch.zeros_like(w) for w in weights)]
        g_b = [g_outs.new_zeros(w.shape[0]) for w in weights]
        g_dt = new(T, B) if need[2] else None
        back = [new(B, w.shape[1]) for w in weights]  # d @ weight, before the sigmoid factor
        # Per-step views, taken once; dz_steps[k]: product k's (0: the first; L: the heads).
        dz_steps = [dz_first.unbind(0), *(d.unbind(0) for d in dz)]
        heads_dz = [d.view(B, 4, H)[:, :3] for d in dz_steps[L]]
        tb_dz = [d[:, 2 * H : 3 * H] for d in dz_steps[L]]
        ta_dz = [d[:, 3 * H :] for d in dz_steps[L]]
        g_steps, dts = g_outs.unbind(1), dt.t()[:, :, None].unbind(0)
        masks = mask.t()[:, :, None].unbind(0) if mask is not None else None
        g = g_outs.new_zeros(B, H).copy_(g_steps[T - 1])  # ∂L/∂(state after step t), in full
        g_3 = g.view(B, 1, H)
        g_h0 = g
        for t1 in range(T, 0, -C):
            t0 = max(0, t1 - C)
            n = t1 - t0
            factor = _head_factor(heads[t0:t1].view(n, B, 3, H), mode, 2.0 * gain)
            slopes = [u[t0:t1].square().neg_().add_(0.25) for u in us]  # sigmoid' = ¼ - u²
            for t in reversed(range(t0, t1)):
                i = t - t0
                j = t if g_x is not None else i  # where step t's lies in dz_steps[0]
                jl = j if L == 0 else i  # and in dz_steps[L]
                passed = None
                if masks is not None:
                    passed = torch.where(masks[t], 0.0, g)  # masked out: h' = h
                    g.sub_(passed)  # where(keep, g, 0)
                torch.mul(g_3, factor[i], out=heads_dz[jl])
                torch.mul(tb_dz[jl], dts[t], out=ta_dz[jl])
                d = dz_steps[L][jl]
                for k in reversed(range(L)):
                    torch.mm(d, weights[k], out=back[k])
                    d = torch.mul(back[k], slopes[k][i], out=dz_steps[k][i if k else j])
                if t:
                    torch.addmm(g_steps[t - 1], d, first_t, out=g)
                else:
                    g_h0 = d @ first_t
                    g = g_h0
                if passed is not None:
                    g.add_(passed)
            # This chunk's share of every weight gradient: one product over its n·B rows.
            rows = n * B
            d_first = dz_first[t0:t1] if g_x is not None else dz_first[:n]
            g_w[0].addmm_(states[t0:t1].view(rows, H).t(), d_first.reshape(rows, N))
            for k in range(L):  # rest[k]: weight [out, in], as F.linear takes it
                d = dz[k][:n].view(rows, -1)
                g_w[k + 1].addmm_(d.t(), us[k][t0:t1].view(rows, -1))
                g_b[k].add_(d.sum(0))
            if g_dt is not None and t_as is not None:
                d_tb = (dz[-1][:n] if L else d_first)[:, :, 2 * H : 3 * H]
                g_dt[t0:t1] = (d_tb * t_as[t0:t1]).sum(2)
        g_flat: list[Tensor | None] = []
        for k in range(L):
            g_flat.append(g_w[k + 1] if need[6 + 2 * k] else None)
            g_flat.append(g_b[k] if need[7 + 2 * k] else None)
        return (
            g_x.transpose(0, 1) if g_x is not None else None,
            g_h0 if need[1] else None,
            g_dt.t() if g_dt is not None else None,
            g_w[0] if need[3] else None,
            None,
            None,
            *g_flat,
        )


def _head_factor(s: Tensor, mode: str, scale: float) -> Tensor:
    """``∂h'/∂(pre-sigmoid heads)`` per unit of ``∂L/∂h'``, ``[n, B, 3, H]`` for ``n`` steps'
    head sigmoids ``s = [s1, s2, σ]``: ``scale·[1 - σ, σ, s2 - s1]`` (default) or
    ``scale·[1, σ, s2 - ½]`` (no_gate), times each sigmoid's slope ``s·(1 - s)``."""
    s1, s2, gate = s.unbind(2)
    coef = torch.empty_like(s)
    if mode == "default":  # h' = gain·(2·(s1 + σ·(s2 - s1)) - 1)
        torch.sub(1.0, gate, out=coef[:, :, 0])
        coef[:, :, 1] = gate
        torch.sub(s2, s1, out=coef[:, :, 2])
    else:  # h' = gain·((2·s1 - 1) + σ·(2·s2 - 1))
        coef[:, :, 0] = 1.0
        coef[:, :, 1] = gate
        torch.sub(s2, 0.5, out=coef[:, :, 2])
    return torch.ops.aten.sigmoid_backward(coef, s).mul_(scale)
