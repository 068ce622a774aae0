"""The numerics contract for replays (docs/numerics.md), as numbers code and tests share.

The same events replayed through different batch compositions (a stream stepped alone, inside a
batch of 64, or as a padded sequence) give **exactly** the same decisions (order, Δt, counts,
duplicates, resets), but float32 states and outputs that agree only to a tolerance: PyTorch's
CPU kernels choose their GEMM blocking and vector/scalar loop split by shape, and do so
differently on Intel AVX-512, AMD and the AVX2 path, so a row computed in a batch is not
bit-identical to the same row computed alone. The bound grows with the length of the replay,
because each step's round-off is carried in the state; it adds up like a random walk (measured
drift per CPU path: bench/numerics_drift.py, a few 1e-6 after one step, about 1e-4 after
10,000), so the bound grows with the square root of the number of steps:

    |a - b| <= REPLAY_ATOL * sqrt(steps) + REPLAY_RTOL * |b|

for states and outputs of order one.
What is bit-exact: a duplicate's answer (returned from the stored window), a state's export and
import, and a prediction and the state committed with it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

REPLAY_RTOL = 1e-5
REPLAY_ATOL = 3e-5


def replay_atol(steps: int) -> float:
    """The absolute tolerance after a replay of ``steps`` events (at least one)."""
    if steps < 0:
        raise ValueError(f"steps must be >= 0; got {steps}")
    return REPLAY_ATOL * math.sqrt(max(1, steps))


def replay_mismatch(
    got: npt.ArrayLike | Sequence[Sequence[float]],
    want: npt.ArrayLike | Sequence[Sequence[float]],
    steps: int,
) -> str | None:
    """``None`` when ``got`` agrees with ``want`` within the contract after ``steps`` events,
    else a sentence naming the worst value (shapes must match)."""
    a = np.asarray(got, dtype=np.float64)
    b = np.asarray(want, dtype=np.float64)
    if a.shape != b.shape:
        return f"shapes differ: {a.shape} vs {b.shape}"
    if a.size == 0:
        return None
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return "non-finite values"
    excess = np.abs(a - b) - (replay_atol(steps) + REPLAY_RTOL * np.abs(b))
    worst = int(np.argmax(excess))
    if excess.flat[worst] <= 0:
        return None
    idx = tuple(int(i) for i in np.unravel_index(worst, a.shape))
    return (
        f"value {idx}: {float(a.flat[worst])!r} vs {float(b.flat[worst])!r} differ by "
        f"{abs(a.flat[worst] - b.flat[worst]):.3g}, beyond the replay tolerance after {steps} "
        f"step(s) ({replay_atol(steps):.1g} + {REPLAY_RTOL:.0e} relative)"
    )
