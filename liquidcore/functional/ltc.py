"""Pure kernels of the liquid time-constant (LTC) cell: tensors in, tensors out.

The ODE of unit ``i`` (ncps's LTC; Hasani et al. 2021), input held over the step::

    cm_i dv_i/dt = gleak_i (vleak_i - v_i) + ε (0 - v_i)
                   + Σ_e w_e σ(sigma_e (v_src(e) - mu_e)) (erev_e - v_i)

where ``e`` runs over the synapses into ``i``, recurrent (source a unit) and sensory (source an
input feature, whose terms are computed once per step and passed in as the *drive*). With
``A(v) = gleak·vleak + Σ w σ erev`` and ``Bd(v) = gleak + ε + Σ w σ``: ``cm dv/dt = A - Bd·v``.
``ε`` is ncps's guard against a zero denominator; it is part of the drive, so every solver
integrates the same ODE (an extra conductance ``ε`` towards 0, 1e-8 by default).

Solvers (the registered table :data:`SOLVERS`) take ``unfolds`` sub-steps of ``h = Δt/unfolds``:

* ``semi_implicit`` (the default): ncps's fused step ``v' = (cm/h·v + A)/(cm/h + Bd)``,
  rewritten without dividing by ``Δt``: ``v' = v + q·(A - Bd·v)``, ``q = Δt/(unfolds·cm +
  Δt·Bd)``. For ``Δt > 0, cm > 0`` this is ncps's formula multiplied through by ``h/cm``. With
  non-negative conductances ``q·Bd ∈ [0, 1]``: every sub-step is a weighted average of ``v`` and
  ``A/Bd``, itself a weighted average of ``0``, ``vleak`` and the reversal potentials, so the
  state stays in their hull for any ``Δt`` in ``[0, ∞)``. ``Δt = 0`` gives ``q = 0``: the state
  stays exactly as it was (ncps divides by ``Δt`` and returns NaN). ``cm = 0`` (reachable with
  explicit constraints, which clip at 0) gives ``v' = A/Bd``; both at once leave it unchanged.
* ``euler``: explicit Euler, ``v' = v + h/cm·(A - Bd·v)``.
* ``rk4``: classic fourth-order Runge-Kutta on the same right-hand side.

The explicit solvers are only conditionally stable: they need ``cm > 0`` and ``h·Bd/cm`` below
about 2 (Euler) or 2.8 (RK4). Only ``semi_implicit`` is bounded for every Δt.

Layout. Kernels work *unit-major*: a state is ``[H, B]`` (one row per unit, streams along the
row), a step's drive ``[2H, B]`` (``[A; Bd]`` parts). Gathering the synapses' sources is then a
copy of rows, and the per-destination sums are CSR sums of rows, which ``embedding_bag``
computes (FBGEMM on CPU). On ``AutoNCP(64, 8)`` with B from 1 to 4096 it beat ``index_add_``, a
COO ``sparse.mm``, ``scatter_add_`` and a one-hot matmul by 3-40×.

Synapse sets come in two forms (:data:`Synapses`): :class:`DenseSynapses`, ``[S, H]`` matrices
computed with ncps's formula (the reference, and what exporters see), and
:class:`SparseSynapses`, the ``E`` active synapses gathered and packed, sorted by ``(dst, src)``,
with their :class:`SynapseIndex`. On a sparse set the semi-implicit solver runs a fused loop
(:func:`fused_semi_implicit`) that is a single autograd node with an analytic backward; every
other combination is plain autograd. On CPU in float32/float64 that loop runs in the native
kernels of :mod:`liquidcore.native` when they are available; the torch code here is their
reference and the fallback.

Time: ``Δt`` arrives checked by :mod:`liquidcore.timing` in the compute dtype, shaped
``[T, 1, B]`` here (one value per stream and step, broadcast over that stream's column; never
squeezed).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable

from liquidcore.native import ltc as native

# --- synapse sets -------------------------------------------------------------------------------


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


def _embedding_sum(weight: Tensor, input: Tensor, offsets: Tensor, psw: Tensor) -> Tensor:
    """``out[k] = Σ_{j in bag k} psw[j]·weight[input[j]]`` (a CSR row sum; autograd-friendly)."""
    return F.embedding_bag(input, weight, offsets, mode="sum", per_sample_weights=psw)


def _raw_embedding_sum(weight: Tensor, input: Tensor, offsets: Tensor, psw: Tensor) -> Tensor:
    """As :func:`_embedding_sum` without the Python-side argument checks (for the fused loops)."""
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
        return _embedding_sum(y, idx.reduce_input, idx.reduce_offsets, syn.reduce_w)
    aug = torch.cat([v, v.new_ones(1, v.shape[1])])
    y = _raw_embedding_sum(aug, idx.pair_input, idx.pair_offsets, syn.pair_w).sigmoid_()
    return _raw_embedding_sum(y, idx.reduce_input, idx.reduce_offsets, syn.reduce_w)


def is_tracing() -> bool:
    """Whether a tracer or exporter is running (they get plain, out-of-place ops)."""
    return bool(
        torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.compiler.is_exporting()
    )


# --- solvers ------------------------------------------------------------------------------------

Solver = Callable[[Tensor, Tensor, Tensor, Tensor, Synapses, int], Tensor]


def semi_implicit_unfold(v: Tensor, z: Tensor, cu: Tensor, dt: Tensor) -> Tensor:
    """One fused semi-implicit sub-step: ``v + q·(A - Bd·v)``, ``q = Δt/(cu + Δt·Bd)``.

    ``z = [A; Bd]`` (``[2H, B]``, ``ε`` included in ``Bd``), ``cu = unfolds·cm`` (``[H, 1]``,
    plus the smallest normal number so that ``cm = Δt = 0`` gives ``q = 0``), ``dt`` ``[1, B]``.
    """
    H = v.shape[0]
    A, Bd = z[:H], z[H:]
    q = dt / (cu + dt * Bd)
    return v + q * (A - Bd * v)


def _check_inputs(v0: Tensor, drive: Tensor, dt: Tensor, cm: Tensor, unfolds: int) -> None:
    H, B = v0.shape
    T = drive.shape[0]
    if drive.shape != (T, 2 * H, B) or dt.shape != (T, 1, B) or cm.shape != (H,):
        raise ValueError(
            f"expected v0 [H, B], drive [T, 2H, B], dt [T, 1, B], cm [H]; got {list(v0.shape)}, "
            f"{list(drive.shape)}, {list(dt.shape)}, {list(cm.shape)}"
        )
    if unfolds < 1:
        raise ValueError(f"unfolds must be >= 1; got {unfolds}")


def _capacitance(cm: Tensor, unfolds: int) -> Tensor:
    """``unfolds·cm + tiny`` as a column: the denominator's Δt-free term."""
    return (cm * unfolds + torch.finfo(cm.dtype).tiny)[:, None]


def semi_implicit(
    v0: Tensor,
    drive: Tensor,
    dt: Tensor,
    cm: Tensor,
    synapses: Synapses,
    unfolds: int,
) -> Tensor:
    """ncps's fused semi-implicit solver over ``T`` steps; returns the state after each step.

    ``v0 [H, B]``; ``drive [T, 2H, B]``: ``[gleak·vleak + sensory Σwσ·erev; gleak + ε + sensory
    Σwσ]``, held over each step (ncps's ``ε`` guard belongs to the drive, so every solver sees
    the same ODE: it is a conductance ``ε`` towards 0); ``dt [T, 1, B]``; ``cm [H]``
    (non-negative); the recurrent ``synapses``. Returns ``[T, H, B]``.
    """
    _check_inputs(v0, drive, dt, cm, unfolds)
    cu = _capacitance(cm, unfolds)
    if isinstance(synapses, SparseSynapses) and not is_tracing():
        return fused_semi_implicit(v0, drive, dt, cu, synapses, unfolds)
    states = []
    v = v0
    for t in range(drive.shape[0]):
        for _ in range(unfolds):
            v = semi_implicit_unfold(v, currents(v, synapses) + drive[t], cu, dt[t])
        states.append(v)
    return torch.stack(states)


def _explicit(
    v0: Tensor,
    drive: Tensor,
    dt: Tensor,
    cm: Tensor,
    synapses: Synapses,
    unfolds: int,
    stages: Callable[[Callable[[Tensor], Tensor], Tensor, Tensor], Tensor],
) -> Tensor:
    """Run an explicit one-step method ``stages(g, v, k) -> v'`` with ``g(v) = A - Bd·v`` and
    ``k = h/cm`` over ``unfolds`` sub-steps of every step."""
    _check_inputs(v0, drive, dt, cm, unfolds)
    H = v0.shape[0]
    states = []
    v = v0
    for t in range(drive.shape[0]):
        k = dt[t] / (unfolds * cm[:, None])  # [H, B]; exactly 0 where Δt = 0 (cm > 0)
        d = drive[t]

        def g(u: Tensor, d: Tensor = d) -> Tensor:
            z = currents(u, synapses) + d
            return z[:H] - z[H:] * u

        for _ in range(unfolds):
            v = stages(g, v, k)
        states.append(v)
    return torch.stack(states)


def _euler_stages(g: Callable[[Tensor], Tensor], v: Tensor, k: Tensor) -> Tensor:
    return v + k * g(v)


def _rk4_stages(g: Callable[[Tensor], Tensor], v: Tensor, k: Tensor) -> Tensor:
    k1 = g(v)
    k2 = g(v + 0.5 * k * k1)
    k3 = g(v + 0.5 * k * k2)
    k4 = g(v + k * k3)
    return v + (k / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)


def euler(
    v0: Tensor,
    drive: Tensor,
    dt: Tensor,
    cm: Tensor,
    synapses: Synapses,
    unfolds: int,
) -> Tensor:
    """Explicit Euler with ``unfolds`` sub-steps (arguments as :func:`semi_implicit`)."""
    return _explicit(v0, drive, dt, cm, synapses, unfolds, _euler_stages)


def rk4(
    v0: Tensor,
    drive: Tensor,
    dt: Tensor,
    cm: Tensor,
    synapses: Synapses,
    unfolds: int,
) -> Tensor:
    """Classic Runge-Kutta 4 with ``unfolds`` sub-steps (arguments as :func:`semi_implicit`)."""
    return _explicit(v0, drive, dt, cm, synapses, unfolds, _rk4_stages)


SOLVERS: dict[str, Solver] = {"semi_implicit": semi_implicit, "euler": euler, "rk4": rk4}


def get_solver(name: str) -> Solver:
    """The registered solver ``name``; ``ValueError`` naming the valid ones otherwise."""
    if name not in SOLVERS:
        raise ValueError(f"unknown LTC solver {name!r}; valid solvers: {', '.join(SOLVERS)}")
    return SOLVERS[name]


# --- the fused semi-implicit loop (sparse synapses) ---------------------------------------------


def fused_semi_implicit(
    v0: Tensor, drive: Tensor, dt: Tensor, cu: Tensor, syn: SparseSynapses, unfolds: int
) -> Tensor:
    """The semi-implicit loop on sparse synapses; ``cu`` is ``unfolds·cm + tiny`` (``[H, 1]``).
    One autograd node when gradients are needed."""
    tensors = (v0, drive, dt, cu, syn.pair_w, syn.reduce_w)
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        out = _FusedSemiImplicit.apply(*tensors, syn.idx, unfolds)
        assert isinstance(out, Tensor)
        return out
    with torch.no_grad():
        if native.supports(*tensors):
            return native.forward(tensors, syn.idx, unfolds)
        return _fused_forward(*tensors, syn.idx, unfolds)


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
    y = _raw_embedding_sum(full, idx.pair_input, idx.pair_offsets, pair_w).sigmoid_()
    z = _raw_embedding_sum(y, idx.reduce_input, idx.reduce_offsets, reduce_w).add_(d)
    A, Bd = z[:H], z[H:]
    D = torch.addcmul(cu, Bd, h)
    q = h / D
    r = A.addcmul_(Bd, v, value=-1.0)  # A - Bd·v, in place of A
    torch.addcmul(v, q, r, out=v_next)
    return _Substep(y, r, Bd, D, q)


def _fused_forward(
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


class _FusedSemiImplicit(torch.autograd.Function):
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
            out = native.forward(tensors, idx, unfolds)
        else:
            out = _fused_forward(*tensors, idx, unfolds)
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
            return native.backward(ctx.saved_tensors, idx, U, g_out, need)  # type: ignore[attr-defined]
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
                gv = _raw_embedding_sum(gx, idx.by_src, idx.src_offsets, src_w)
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
