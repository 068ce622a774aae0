"""Learning-rate schedules as pure functions of the optimiser step (no scheduler object, so the
schedule's whole state is the step count, which the training state stores in JSON)."""

from __future__ import annotations

import math


def lr_factor(
    schedule: str,
    step: int,
    *,
    steps_per_epoch: int,
    epochs: int,
    decay: float = 0.95,
    min_lr_ratio: float = 0.0,
) -> float:
    """Multiplier of the base learning rate before optimiser step ``step`` (0-based).

    ``exponential``: ``decay ** (step / steps_per_epoch)``, i.e. ``decay`` per epoch applied
    smoothly per batch (Keras ``ExponentialDecay(lr, steps_per_epoch, decay)``, as the CfC
    paper trains). ``cosine``: from 1 to ``min_lr_ratio`` over ``epochs``. ``constant``: 1.
    """
    if steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be >= 1; got {steps_per_epoch}")
    progress = step / steps_per_epoch
    if schedule == "exponential":
        return float(decay**progress)
    if schedule == "cosine":
        frac = min(progress / max(epochs, 1), 1.0)
        return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * frac))
    if schedule == "constant":
        return 1.0
    raise ValueError(f"unknown schedule {schedule!r}; valid: exponential, cosine, constant")
