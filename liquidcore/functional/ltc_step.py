"""The LTC cell's pure sub-step kernels: tensors in, tensors out.

The ODE of unit ``i`` (ncps's LTC; Hasani et al. 2021), input held over the step::

    cm_i dv_i/dt = gleak_i (vleak_i - v_i) + ε (0 - v_i)
                   + Σ_e w_e σ(sigma_e (v_src(e) - mu_e)) (erev_e - v_i)

where ``e`` runs over the synapses into ``i``, recurrent (source a unit) and sensory (source an
input feature, whose terms are computed once per step and passed in as the *drive*). With
``A(v) = gleak·vleak + Σ w σ erev`` and ``Bd(v) = gleak + ε + Σ w σ``: ``cm dv/dt = A - Bd·v``.
``ε`` is ncps's guard against a zero denominator; it is part of the drive, so every solver
integrates the same ODE (an extra conductance ``ε`` towards 0, 1e-8 by default).

Solvers (the registered table :data:`liquidcore.functional.ltc_unroll.SOLVERS`) take ``unfolds``
sub-steps of ``h = Δt/unfolds`` per step:

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

Time: ``Δt`` arrives checked by :mod:`liquidcore.timing` in the compute dtype, shaped
``[1, B]`` per step here (one value per stream, broadcast over that stream's column; never
squeezed). A state is ``[H, B]`` and a drive ``[2H, B]`` (unit-major, see
:mod:`liquidcore.functional.ltc_synapses`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def semi_implicit_unfold(v: Tensor, z: Tensor, cu: Tensor, dt: Tensor) -> Tensor:
    """One fused semi-implicit sub-step: ``v + q·(A - Bd·v)``, ``q = Δt/(cu + Δt·Bd)``.

    ``z = [A; Bd]`` (``[2H, B]``, ``ε`` included in ``Bd``), ``cu = unfolds·cm`` (``[H, 1]``,
    plus the smallest normal number so that ``cm = Δt = 0`` gives ``q = 0``), ``dt`` ``[1, B]``.
    """
    H = v.shape[0]
    A, Bd = z[:H], z[H:]
    q = dt / (cu + dt * Bd)
    return v + q * (A - Bd * v)


def check_inputs(v0: Tensor, drive: Tensor, dt: Tensor, cm: Tensor, unfolds: int) -> None:
    H, B = v0.shape
    T = drive.shape[0]
    if drive.shape != (T, 2 * H, B) or dt.shape != (T, 1, B) or cm.shape != (H,):
        raise ValueError(
            f"expected v0 [H, B], drive [T, 2H, B], dt [T, 1, B], cm [H]; got {list(v0.shape)}, "
            f"{list(drive.shape)}, {list(dt.shape)}, {list(cm.shape)}"
        )
    if unfolds < 1:
        raise ValueError(f"unfolds must be >= 1; got {unfolds}")


def capacitance(cm: Tensor, unfolds: int) -> Tensor:
    """``unfolds·cm + tiny`` as a column: the denominator's Δt-free term."""
    return (cm * unfolds + torch.finfo(cm.dtype).tiny)[:, None]


def euler_stages(g: Callable[[Tensor], Tensor], v: Tensor, k: Tensor) -> Tensor:
    """One explicit Euler sub-step of ``dv = g(v)`` with ``k = h/cm``."""
    return v + k * g(v)


def rk4_stages(g: Callable[[Tensor], Tensor], v: Tensor, k: Tensor) -> Tensor:
    """One classic Runge-Kutta 4 sub-step of ``dv = g(v)`` with ``k = h/cm``."""
    k1 = g(v)
    k2 = g(v + 0.5 * k * k1)
    k3 = g(v + 0.5 * k * k2)
    k4 = g(v + k * k3)
    return v + (k / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
