"""LTC solvers: a sequence of steps unrolled into ``unfolds`` sub-steps each.

Each solver maps ``(v0 [H, B], drive [T, 2H, B], dt [T, 1, B], cm [H], synapses, unfolds)`` to
the state after every step, ``[T, H, B]``; the sub-step math is in
:mod:`liquidcore.functional.ltc_step`. With a sparse synapse set the semi-implicit solver runs
the fused loop (:mod:`liquidcore.functional.ltc_fused`: one autograd node with an analytic
backward, native kernels on CPU); every other combination is plain autograd. Solvers are
registered by name in :data:`SOLVERS`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from liquidcore.functional.ltc_fused import fused_semi_implicit
from liquidcore.functional.ltc_step import (
    capacitance,
    check_inputs,
    euler_stages,
    rk4_stages,
    semi_implicit_unfold,
)
from liquidcore.functional.ltc_synapses import SparseSynapses, Synapses, currents
from liquidcore.functional.tracing import is_tracing

Solver = Callable[[Tensor, Tensor, Tensor, Tensor, Synapses, int], Tensor]


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
    check_inputs(v0, drive, dt, cm, unfolds)
    cu = capacitance(cm, unfolds)
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
    check_inputs(v0, drive, dt, cm, unfolds)
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


def euler(
    v0: Tensor,
    drive: Tensor,
    dt: Tensor,
    cm: Tensor,
    synapses: Synapses,
    unfolds: int,
) -> Tensor:
    """Explicit Euler with ``unfolds`` sub-steps (arguments as :func:`semi_implicit`)."""
    return _explicit(v0, drive, dt, cm, synapses, unfolds, euler_stages)


def rk4(
    v0: Tensor,
    drive: Tensor,
    dt: Tensor,
    cm: Tensor,
    synapses: Synapses,
    unfolds: int,
) -> Tensor:
    """Classic Runge-Kutta 4 with ``unfolds`` sub-steps (arguments as :func:`semi_implicit`)."""
    return _explicit(v0, drive, dt, cm, synapses, unfolds, rk4_stages)


SOLVERS: dict[str, Solver] = {"semi_implicit": semi_implicit, "euler": euler, "rk4": rk4}


def get_solver(name: str) -> Solver:
    """The registered solver ``name``; ``ValueError`` naming the valid ones otherwise."""
    if name not in SOLVERS:
        raise ValueError(f"unknown LTC solver {name!r}; valid solvers: {', '.join(SOLVERS)}")
    return SOLVERS[name]
