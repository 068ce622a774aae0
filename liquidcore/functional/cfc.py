"""Pure kernels of the closed-form continuous-time (CfC) cell: tensors in, tensors out.

Two layers of functions live here.

* ``cfc_default``, ``cfc_no_gate``, ``cfc_pure``: the update of each mode written exactly as
  ncps writes it, from the heads' pre-activations. They are the readable statement of the math and
  the oracle the tests hold the fast path to.
* ``MODES``: the registered ``{name: CfCMode}`` table the cells use. A mode names its linear
  heads in the column order of one *packed* matrix product and the exact power-of-two scale each
  head is packed with; its ``update`` turns the packed heads ``g`` into the new state.

Packed layouts (``H`` = hidden size, each block ``H`` columns):

* ``default`` and ``no_gate``: ``g = [2·ff1 | 2·ff2 | t_b | t_a]``. The factor 2 is folded into
  the packed weights (exact in binary floating point) so that ``tanh(u) = 2·sigmoid(2u) - 1``
  costs one sigmoid pass over ``[2·ff1 | 2·ff2 | t]`` once ``t = t_a·Δt + t_b`` is written over
  ``t_b``. On CPU builds ``torch.tanh`` costs about three sigmoids.
* ``pure``: ``g = [ff1]``, plus the parameters ``w_tau`` and ``A`` (``[1, H]``).

Δt is ``[B, 1]``, one value per stream, broadcast over that stream's own row; it is never squeezed
(see :mod:`liquidcore.timing`). When ``g`` does not require grad (inference) the updates work in
place on ``g``, which is their own intermediate; with autograd they are out of place. Neither
path touches the caller's state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

# --- ncps's formulas (the reference) ------------------------------------------------------------


def cfc_default(
    ff1: Tensor,
    ff2: Tensor,
    t_a: Tensor,
    t_b: Tensor,
    dt: Tensor,
    act: Callable[[Tensor], Tensor] = torch.tanh,
) -> Tensor:
    """``tanh(ff1)·(1 - σ) + σ·tanh(ff2)`` with ``σ = sigmoid(t_a·Δt + t_b)``; ``act`` replaces
    tanh (the CfC paper's TensorFlow cell uses ``lecun_tanh``)."""
    gate = torch.sigmoid(t_a * dt + t_b)
    return act(ff1) * (1.0 - gate) + gate * act(ff2)


def cfc_no_gate(
    ff1: Tensor,
    ff2: Tensor,
    t_a: Tensor,
    t_b: Tensor,
    dt: Tensor,
    act: Callable[[Tensor], Tensor] = torch.tanh,
) -> Tensor:
    """``tanh(ff1) + σ·tanh(ff2)`` with ``σ = sigmoid(t_a·Δt + t_b)``; ``act`` as above."""
    gate = torch.sigmoid(t_a * dt + t_b)
    return act(ff1) + gate * act(ff2)


def cfc_pure(ff1: Tensor, w_tau: Tensor, A: Tensor, dt: Tensor) -> Tensor:
    """The direct solution: ``-A·exp(-Δt·(|w_tau| + |ff1|))·ff1 + A``."""
    return -A * torch.exp(-dt * (torch.abs(w_tau) + torch.abs(ff1))) * ff1 + A


# --- packed updates (what the cells run) --------------------------------------------------------

PackedUpdate = Callable[[Tensor, Tensor, Tensor | None, Tensor | None], Tensor]


def _gated_heads(g: Tensor, dt: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(s1, s2, σ)`` from ``g = [2·ff1 | 2·ff2 | t_b | t_a]``: ``s = sigmoid(2·ff)`` and
    ``σ = sigmoid(t_a·Δt + t_b)``. Without autograd, ``s1, s2, σ`` are views of ``g``."""
    H = g.shape[1] // 4
    if g.requires_grad:
        # unbind: one backward node (a stack) instead of four slices that each zero-fill g
        f1, f2, t_b, t_a = g.unflatten(1, (4, H)).unbind(1)
        return torch.sigmoid(f1), torch.sigmoid(f2), torch.sigmoid(torch.addcmul(t_b, t_a, dt))
    f1, f2, t_b, t_a = g.tensor_split(4, dim=1)  # the cheapest split at B = 1
    # No graph to protect: overwrite our own intermediate, with one sigmoid pass.
    t_b.addcmul_(t_a, dt)
    g.narrow(1, 0, 3 * H).sigmoid_()
    return f1, f2, t_b


def packed_default(g: Tensor, dt: Tensor, w_tau: Tensor | None, A: Tensor | None) -> Tensor:
    """``default`` from ``g = [2·ff1 | 2·ff2 | t_b | t_a]``.

    ``tanh(ff1)(1 - σ) + σ tanh(ff2) = 2·lerp(s1, s2, σ) - 1`` with ``s = sigmoid(2·ff)``.
    """
    s1, s2, gate = _gated_heads(g, dt)
    out = torch.lerp(s1, s2, gate)
    if out.requires_grad:
        return out * 2.0 - 1.0
    return out.add_(out).sub_(1.0)  # add_(out): an exact doubling, cheaper than a scalar op


def packed_no_gate(g: Tensor, dt: Tensor, w_tau: Tensor | None, A: Tensor | None) -> Tensor:
    """``no_gate`` from ``g = [2·ff1 | 2·ff2 | t_b | t_a]``: ``tanh(ff1) + σ·tanh(ff2)``."""
    s1, s2, gate = _gated_heads(g, dt)
    if g.requires_grad:
        return torch.addcmul(s1 * 2.0 - 1.0, gate, s2 * 2.0 - 1.0)
    H = s1.shape[1]
    ff = g.narrow(1, 0, 2 * H)  # s1, s2 are its views: tanh = 2·s - 1 in place
    ff.add_(ff).sub_(1.0)
    return torch.addcmul(s1, gate, s2)


def packed_pure(g: Tensor, dt: Tensor, w_tau: Tensor | None, A: Tensor | None) -> Tensor:
    """``pure`` from ``g = [ff1]``: ``A - A·exp(-Δt·(|w_tau| + |ff1|))·ff1``."""
    if w_tau is None or A is None:
        raise ValueError("the pure CfC update needs the parameters w_tau and A")
    if torch.is_grad_enabled() and (g.requires_grad or w_tau.requires_grad or A.requires_grad):
        return cfc_pure(g, w_tau, A, dt)
    decay = torch.abs(g).add_(torch.abs(w_tau)).mul_(-dt).exp_().mul_(g)
    return torch.addcmul(A, A, decay, value=-1.0)


class CfCMode(NamedTuple):
    """A registered CfC mode: its heads in packed column order, their exact packing scales, and
    the update from the packed heads."""

    heads: tuple[str, ...]
    head_scales: tuple[float, ...]
    update: PackedUpdate


MODES: dict[str, CfCMode] = {
    "default": CfCMode(("ff1", "ff2", "time_b", "time_a"), (2.0, 2.0, 1.0, 1.0), packed_default),
    "no_gate": CfCMode(("ff1", "ff2", "time_b", "time_a"), (2.0, 2.0, 1.0, 1.0), packed_no_gate),
    "pure": CfCMode(("ff1",), (1.0,), packed_pure),
}


def get_mode(name: str) -> CfCMode:
    """The mode registered as ``name``; ``ValueError`` listing the valid modes if none."""
    try:
        return MODES[name]
    except KeyError:
        raise ValueError(
            f"unknown CfC mode {name!r}; valid modes: {', '.join(sorted(MODES))}"
        ) from None


# --- weight folding ------------------------------------------------------------------------------


def fold_linear(
    weight: Tensor,
    bias: Tensor,
    *,
    in_scale: float = 1.0,
    in_shift: float = 0.0,
    out_scale: float = 1.0,
) -> tuple[Tensor, Tensor]:
    """``(W, b)`` such that ``s @ W.T + b == out_scale·(weight @ (in_scale·s + in_shift) + bias)``.

    Folds an affine map of the input (the ``scale·sigmoid + shift`` form of a tanh-shaped
    activation) and a scale of the output (the ``pre`` factor of the next one) into a linear
    layer. Identity factors return the tensors themselves (no rounding, no copy).
    """
    if in_shift != 0.0:
        bias = bias + in_shift * weight.sum(dim=1)
    if in_scale * out_scale != 1.0:
        weight = weight * (in_scale * out_scale)
    if out_scale != 1.0:
        bias = bias * out_scale
    return weight, bias
