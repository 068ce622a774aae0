"""Irregularly observed Lorenz-63: forecast the state a fixed time ahead of each observation.

Trajectories of ``dx/dt = σ(y - x)``, ``dy/dt = x(ρ - z) - y``, ``dz/dt = xy - βz``
(σ = 10, ρ = 28, β = 8/3) are integrated with RK4 at ``grid_dt / substeps`` from random
initial states (after a burn-in onto the attractor) and recorded every ``grid_dt``. Each grid
point is then observed with probability ``keep``, so the gaps Δt between observations vary
(multiples of ``grid_dt``). Input: the observed state; target: the true state at
``t + k * horizon`` for ``k = 1..steps_ahead`` (one-step: ``steps_ahead = 1``; multi-step:
more, concatenated as ``[x1, y1, z1, x2, ...]``). Time is in Lorenz time units.
Trajectories are split into train / valid / test, so no trajectory is in two sets.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from liquidcore.data import DatasetSplits, Stream, TaskSpec, cut_windows

SIGMA, RHO, BETA = 10.0, 28.0, 8.0 / 3.0
Array = npt.NDArray[np.float64]


def lorenz_rhs(s: Array) -> Array:
    x, y, z = s[..., 0], s[..., 1], s[..., 2]
    return np.stack([SIGMA * (y - x), x * (RHO - z) - y, x * y - BETA * z], axis=-1)


def rk4(s: Array, h: float, steps: int) -> Array:
    """``steps`` RK4 steps of size ``h`` (vectorised over leading dimensions)."""
    for _ in range(steps):
        k1 = lorenz_rhs(s)
        k2 = lorenz_rhs(s + 0.5 * h * k1)
        k3 = lorenz_rhs(s + 0.5 * h * k2)
        k4 = lorenz_rhs(s + h * k3)
        s = s + h / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
    return s


def integrate(
    n_traj: int,
    n_points: int,
    *,
    grid_dt: float = 0.01,
    substeps: int = 4,
    burn_in: float = 5.0,
    seed: int = 0,
) -> Array:
    """``[n_traj, n_points, 3]`` states recorded every ``grid_dt`` (float64)."""
    rng = np.random.RandomState(seed)
    s = rng.normal(0.0, 1.0, size=(n_traj, 3)) * np.array([8.0, 8.0, 8.0]) + [0.0, 0.0, 25.0]
    h = grid_dt / substeps
    s = rk4(s, h, round(burn_in / h))
    out = np.empty((n_traj, n_points, 3))
    for i in range(n_points):
        out[:, i] = s
        s = rk4(s, h, substeps)
    return out


def observe(
    traj: Array,
    rng: np.random.RandomState,
    *,
    keep: float,
    grid_dt: float,
    horizon_points: int,
    steps_ahead: int,
    traj_id: str,
) -> Stream:
    """Observed rows of one trajectory, with targets ``steps_ahead`` horizons ahead."""
    last = traj.shape[0] - 1 - horizon_points * steps_ahead
    if last < 1:
        raise ValueError("trajectory too short for the forecast horizon")
    kept = np.flatnonzero(rng.rand(last + 1) < keep)
    if kept.size == 0:
        kept = np.array([0])
    ahead = kept[:, None] + horizon_points * np.arange(1, steps_ahead + 1)[None, :]
    y = traj[ahead].reshape(kept.size, 3 * steps_ahead)
    return Stream(
        id=traj_id,
        t=kept.astype(np.float64) * grid_dt,
        x=traj[kept].astype(np.float32),
        y=y.astype(np.float32),
    )


def load_lorenz(
    *,
    n_traj: int = 120,
    n_points: int = 2000,
    keep: float = 0.3,
    grid_dt: float = 0.01,
    horizon: float = 0.1,
    steps_ahead: int = 1,
    window: int = 64,
    stride: int | None = None,
    fractions: tuple[float, float] = (0.7, 0.15),
    seed: int = 0,
) -> DatasetSplits:
    """Train / valid / test windows of irregular Lorenz-63 observations.

    ``horizon`` must be a multiple of ``grid_dt``; ``fractions`` are the train and valid shares
    of the trajectories (the rest is test).
    """
    if not 0.0 < keep <= 1.0:
        raise ValueError(f"keep must be in (0, 1]; got {keep}")
    horizon_points = round(horizon / grid_dt)
    if horizon_points < 1 or abs(horizon_points * grid_dt - horizon) > 1e-9:
        raise ValueError(f"horizon {horizon} must be a positive multiple of grid_dt {grid_dt}")
    if steps_ahead < 1:
        raise ValueError(f"steps_ahead must be >= 1; got {steps_ahead}")
    trajs = integrate(n_traj, n_points, grid_dt=grid_dt, seed=seed)
    rng = np.random.RandomState(seed + 1)
    streams = [
        observe(
            trajs[i],
            rng,
            keep=keep,
            grid_dt=grid_dt,
            horizon_points=horizon_points,
            steps_ahead=steps_ahead,
            traj_id=f"traj{i}",
        )
        for i in range(n_traj)
    ]
    n_train = max(1, int(fractions[0] * n_traj))
    n_valid = max(1, int(fractions[1] * n_traj))
    if n_train + n_valid >= n_traj:
        raise ValueError(f"{n_traj} trajectories are too few for a train/valid/test split")
    parts = {
        "train": streams[:n_train],
        "valid": streams[n_train : n_train + n_valid],
        "test": streams[n_train + n_valid :],
    }
    default_dt = grid_dt / keep  # the mean gap between observations
    step = stride if stride is not None else window // 2
    sets = {k: cut_windows(v, window, step, default_dt=default_dt) for k, v in parts.items()}
    names = tuple(f"{c}(t+{k * horizon:g})" for k in range(1, steps_ahead + 1) for c in "xyz")
    spec = TaskSpec(
        task="regression",
        n_features=3,
        n_outputs=3 * steps_ahead,
        loss_on="all",
        feature_names=("x", "y", "z"),
        output_names=names,
        time_unit=grid_dt / keep,
        default_dt=default_dt,
    )
    info: dict[str, Any] = {
        "benchmark": "lorenz",
        "trajectories": {k: len(v) for k, v in parts.items()},
        "windows": {k: len(v) for k, v in sets.items()},
        "keep": keep,
        "grid_dt": grid_dt,
        "horizon": horizon,
        "steps_ahead": steps_ahead,
        "seed": seed,
    }
    return DatasetSplits(spec, sets["train"], sets["valid"], sets["test"], info=info)
