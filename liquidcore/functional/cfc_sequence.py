"""A gated CfC sequence (modes ``default`` and ``no_gate``) as one autograd node, for training.

Stepping a sequence in plain autograd records ~15 nodes per step, and each step's backward
computes every weight gradient as a product over the batch alone (``[4H, B] @ [B, N]`` at
B = 64: a short inner dimension, the least efficient shape there is), adds it into the running
sum, and undoes the per-step splits of the packed heads and of the inputs' share with
zero-filled copies. This node runs the same forward (the same operations, so the same bits) and
keeps each step's activations; its backward walks the steps only for what is truly sequential,
the gradient reaching each state (two products per step), and forms every weight gradient as one
product per chunk of ``CHUNK`` steps (``CHUNK·B`` rows).

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
import torch.nn.functional as F
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
    """Memory: every tensor kept per step is one step's size (``[B, N]``, tens of KB), as
    autograd's own are. Sequence-sized buffers (MBs) were tried first and lost more than the
    products gained: glibc's default malloc maps such blocks fresh on every call, and the page
    faults of a dozen of them cost more than the whole backward. The backward therefore forms
    the weight gradients in chunks of ``CHUNK`` steps (``CHUNK·B`` rows per product) through
    buffers allocated once per call."""

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
        rest = list(zip(flat[0::2], flat[1::2], strict=True))
        H = h0.shape[1]
        keep_t_a = ctx.needs_input_grad[2]  # type: ignore[attr-defined]
        states, sigs, heads, t_as = [h0], [], [], []
        h = h0
        # Per-step views taken once (a slice per step is a dispatch per step).
        dts = dt.t()[:, :, None].unbind(0)
        for t, x_t in enumerate(x_share.unbind(1)):
            z = torch.addmm(x_t, h, first_h)
            step_sigs = []
            for w, b in rest:
                s = torch.sigmoid(z)
                step_sigs.append(s)
                z = F.linear(s - 0.5, w, b)
            # The operations of the step's autograd path (liquidcore.functional.cfc), so the
            # same bits; in place where that path allocates (z is this loop's own).
            t_b, t_a = z[:, 2 * H : 3 * H], z[:, 3 * H :]
            if keep_t_a:
                t_as.append(t_a.clone())
            t_b.addcmul_(t_a, dts[t])
            s = torch.sigmoid(z[:, : 3 * H])
            s1, s2, gate = s.unflatten(1, (3, H)).unbind(1)
            if mode == "default":
                h_new = torch.lerp(s1, s2, gate) * 2.0 - 1.0
            else:
                h_new = torch.addcmul(s1 * 2.0 - 1.0, gate, s2 * 2.0 - 1.0)
            if gain != 1.0:
                h_new = h_new * gain
            if mask is not None:
                h_new = torch.where(mask[:, t : t + 1], h_new, h)
            sigs.append(step_sigs)
            heads.append(s)
            states.append(h_new)
            h = h_new
        ctx.save_for_backward(dt, first_h, *flat)
        ctx.mask = mask  # type: ignore[attr-defined]
        ctx.steps = (states, sigs, heads, t_as)  # type: ignore[attr-defined]
        ctx.config = config  # type: ignore[attr-defined]
        return torch.stack(states[1:], dim=1)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, g_outs: Tensor) -> tuple[Tensor | None, ...]:
        mode, gain = ctx.config
        dt, first_h, *flat = ctx.saved_tensors
        mask = ctx.mask
        states, sigs, heads, t_as = ctx.steps
        del ctx.steps  # once_differentiable: no second backward needs them
        weights, L = flat[0::2], len(flat) // 2
        need = ctx.needs_input_grad
        B, T, H = g_outs.shape
        first_t = first_h.t()
        widths = [first_h.shape[1], *(w.shape[0] for w in weights)]
        C = min(CHUNK, T)
        # dz[k]: gradients of a chunk's pre-activations (dz[0]: the first product's, dz[L]:
        # the packed heads'); inputs[k]: what product k read (the states, then sigmoid - 0.5).
        dz = [g_outs.new_empty(C, B, n) for n in widths]
        inputs = [g_outs.new_empty(C, B, H), *(g_outs.new_empty(C, B, w.shape[1]) for w in weights)]
        g_w: list[Tensor] = [g_outs.new_zeros(H, widths[0])]
        g_w += [torch.zeros_like(w) for w in weights]
        g_b = [g_outs.new_zeros(n) for n in widths[1:]]
        g_x = g_outs.new_empty(B, T, widths[0]) if need[0] else None
        g_dt = g_outs.new_empty(B, T) if need[2] else None
        carry = g_outs.new_zeros(B, H)  # ∂L/∂h reaching the state after step t from later ones
        g_steps, dts = g_outs.unbind(1), dt.t()[:, :, None].unbind(0)
        for t1 in range(T, 0, -C):
            t0 = max(0, t1 - C)
            n = t1 - t0
            for t in reversed(range(t0, t1)):
                i = t - t0
                g = g_steps[t] + carry
                passed = None
                if mask is not None:
                    keep = mask[:, t : t + 1]
                    passed = torch.where(keep, 0.0, g)  # masked out: h' = h
                    g = torch.where(keep, g, 0.0)
                if gain != 1.0:
                    g = g * gain
                s = heads[t]
                s1, s2, gate = s.unflatten(1, (3, H)).unbind(1)
                if mode == "default":  # h' = 2·(s1 + σ·(s2 - s1)) - 1
                    g2 = g * 2.0
                    d_s2 = g2 * gate
                    d_s = torch.cat([g2 - d_s2, d_s2, g2 * (s2 - s1)], 1)
                else:  # h' = (2·s1 - 1) + σ·(2·s2 - 1)
                    g2 = g * 2.0
                    d_s = torch.cat([g2, g2 * gate, g * (s2 * 2.0 - 1.0)], 1)
                d_pre = torch.ops.aten.sigmoid_backward(d_s, s)
                d_tb = d_pre[:, 2 * H :]
                torch.cat([d_pre, d_tb * dts[t]], 1, out=dz[L][i])
                if g_dt is not None:
                    g_dt[:, t] = (d_tb * t_as[t]).sum(1)
                d = dz[L][i]
                for k in reversed(range(L)):
                    torch.ops.aten.sigmoid_backward(d @ weights[k], sigs[t][k], grad_input=dz[k][i])
                    d = dz[k][i]
                carry = d @ first_t
                if passed is not None:
                    carry = carry + passed
            # This chunk's share of every weight gradient: one product over its n·B rows.
            rows = n * B
            torch.stack(states[t0:t1], out=inputs[0][:n])
            for k in range(L):
                torch.stack([sg[k] for sg in sigs[t0:t1]], out=inputs[k + 1][:n]).sub_(0.5)
            g_w[0].addmm_(inputs[0][:n].view(rows, H).t(), dz[0][:n].view(rows, -1))
            for k in range(1, L + 1):  # rest[k - 1]: weight [out, in], as F.linear takes it
                d = dz[k][:n].view(rows, -1)
                g_w[k].addmm_(d.t(), inputs[k][:n].view(rows, -1))
                g_b[k - 1].add_(d.sum(0))
            if g_x is not None:
                g_x[:, t0:t1] = dz[0][:n].transpose(0, 1)
        g_flat: list[Tensor | None] = []
        for k in range(L):
            g_flat.append(g_w[k + 1] if need[6 + 2 * k] else None)
            g_flat.append(g_b[k] if need[7 + 2 * k] else None)
        g_first_h = g_w[0] if need[3] else None
        g_h0 = carry if need[1] else None
        return (g_x, g_h0, g_dt, g_first_h, None, None, *g_flat)
