"""Windowed sequence sets: what a trainer consumes and every benchmark dataset produces.

A :class:`SequenceSet` holds ``N`` windows of ``T`` steps as numpy arrays: inputs ``x[N,T,F]``
(float32), elapsed time ``dt[N,T]`` (float32, **seconds**, the Δt before each step), targets
``y`` and an optional ``mask[N,T]`` (False marks padding after the end of a short window).

Targets depend on the task (:class:`TaskSpec`):

- regression: ``y[N,T,O]`` float32, one target vector per step;
- classification: ``y[N,T]`` int64 class indices per step, or ``y[N]`` one label per window
  (only with ``loss_on="last"``).

``loss_on="all"`` scores every valid step, ``"last"`` only the last valid step of each window.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

Task = Literal["regression", "classification"]
LossOn = Literal["all", "last"]
TASKS: tuple[str, ...] = ("regression", "classification")
LOSS_ON: tuple[str, ...] = ("all", "last")

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class TaskSpec:
    """What is predicted, and how it is scored.

    ``n_outputs`` is the number of regression targets, or the number of classes.
    ``time_unit`` and ``default_dt`` are seconds (the model's time unit, and the Δt given to the
    first event of a stream).
    """

    task: Task
    n_features: int
    n_outputs: int
    loss_on: LossOn = "all"
    feature_names: tuple[str, ...] | None = None
    output_names: tuple[str, ...] | None = None
    time_unit: float = 1.0
    default_dt: float = 1.0

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}; valid tasks: {', '.join(TASKS)}")
        if self.loss_on not in LOSS_ON:
            raise ValueError(f"unknown loss_on {self.loss_on!r}; valid: {', '.join(LOSS_ON)}")
        if self.n_features <= 0 or self.n_outputs <= 0:
            raise ValueError(
                f"n_features and n_outputs must be > 0; got {self.n_features}, {self.n_outputs}"
            )
        if self.task == "classification" and self.n_outputs < 2:
            raise ValueError(f"classification needs >= 2 classes; got {self.n_outputs}")
        if not (np.isfinite(self.time_unit) and self.time_unit > 0):
            raise ValueError(f"time_unit must be seconds > 0; got {self.time_unit}")
        if not (np.isfinite(self.default_dt) and self.default_dt >= 0):
            raise ValueError(f"default_dt must be seconds >= 0; got {self.default_dt}")
        for what, names, size in (
            ("feature_names", self.feature_names, self.n_features),
            ("output_names", self.output_names, self.n_outputs),
        ):
            if names is not None and len(names) != size:
                raise ValueError(f"{what} has {len(names)} names for {size} columns")

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "n_features": self.n_features,
            "n_outputs": self.n_outputs,
            "loss_on": self.loss_on,
            "feature_names": list(self.feature_names) if self.feature_names else None,
            "output_names": list(self.output_names) if self.output_names else None,
            "time_unit": self.time_unit,
            "default_dt": self.default_dt,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TaskSpec:
        fn, on = d.get("feature_names"), d.get("output_names")
        return cls(
            task=d["task"],
            n_features=int(d["n_features"]),
            n_outputs=int(d["n_outputs"]),
            loss_on=d.get("loss_on", "all"),
            feature_names=tuple(fn) if fn else None,
            output_names=tuple(on) if on else None,
            time_unit=float(d.get("time_unit", 1.0)),
            default_dt=float(d.get("default_dt", 1.0)),
        )


@dataclass(frozen=True)
class SequenceSet:
    """``N`` windows of ``T`` steps (see the module docstring for shapes and units)."""

    x: FloatArray
    dt: FloatArray
    y: npt.NDArray[Any]
    mask: BoolArray | None = None
    stream: npt.NDArray[Any] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.x.ndim != 3:
            raise ValueError(f"x must be [N, T, F]; got shape {list(self.x.shape)}")
        n, t = self.x.shape[0], self.x.shape[1]
        if self.dt.shape != (n, t):
            raise ValueError(f"dt must be [{n}, {t}] to match x; got {list(self.dt.shape)}")
        if self.y.shape[0] != n or (self.y.ndim >= 2 and self.y.shape[1] != t):
            raise ValueError(f"y must be [{n}], [{n}, {t}] or [{n}, {t}, O]; got {self.y.shape}")
        if self.mask is not None and self.mask.shape != (n, t):
            raise ValueError(f"mask must be [{n}, {t}]; got {list(self.mask.shape)}")
        if self.stream is not None and self.stream.shape[0] != n:
            raise ValueError(f"stream must have {n} entries; got {self.stream.shape[0]}")

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def steps(self) -> int:
        return int(self.x.shape[1])

    def valid_mask(self) -> BoolArray:
        """``mask`` or all-True when there is no padding."""
        if self.mask is not None:
            return self.mask
        return np.ones(self.dt.shape, dtype=np.bool_)

    def subset(self, index: Sequence[int] | npt.NDArray[np.integer[Any]]) -> SequenceSet:
        idx = np.asarray(index, dtype=np.int64)
        return replace(
            self,
            x=self.x[idx],
            dt=self.dt[idx],
            y=self.y[idx],
            mask=None if self.mask is None else self.mask[idx],
            stream=None if self.stream is None else self.stream[idx],
        )

    def head(self, n: int) -> SequenceSet:
        """The first ``n`` windows (for smoke runs on a slice)."""
        return self.subset(np.arange(min(n, len(self))))


def concat_sets(sets: Sequence[SequenceSet]) -> SequenceSet:
    """Stack sets with the same number of steps and target layout."""
    if not sets:
        raise ValueError("nothing to concatenate")
    any_mask = any(s.mask is not None for s in sets)
    return SequenceSet(
        x=np.concatenate([s.x for s in sets]),
        dt=np.concatenate([s.dt for s in sets]),
        y=np.concatenate([s.y for s in sets]),
        mask=np.concatenate([s.valid_mask() for s in sets]) if any_mask else None,
        stream=(
            np.concatenate([s.stream for s in sets])
            if all(s.stream is not None for s in sets)
            else None
        ),
    )


@dataclass(frozen=True)
class DatasetSplits:
    """Train / validation (/ test) sets of one task. Every set has the same ``T``-independent
    layout; ``info`` carries protocol facts to report (sizes, seeds, sources)."""

    spec: TaskSpec
    train: SequenceSet
    valid: SequenceSet
    test: SequenceSet | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, s in (("train", self.train), ("valid", self.valid), ("test", self.test)):
            if s is None:
                continue
            if len(s) == 0:
                raise ValueError(f"the {name} set has no windows")
            check_targets(s, self.spec, name)

    def sizes(self) -> dict[str, int]:
        out = {"train": len(self.train), "valid": len(self.valid)}
        if self.test is not None:
            out["test"] = len(self.test)
        return out


def check_targets(s: SequenceSet, spec: TaskSpec, name: str = "data") -> None:
    """Refuse a target layout that does not fit the task."""
    if s.x.shape[2] != spec.n_features:
        raise ValueError(f"{name}: x has {s.x.shape[2]} features; the task has {spec.n_features}")
    if spec.task == "regression":
        if s.y.ndim != 3 or s.y.shape[2] != spec.n_outputs:
            raise ValueError(
                f"{name}: regression targets must be [N, T, {spec.n_outputs}]; got {s.y.shape}"
            )
        return
    if s.y.ndim == 1 and spec.loss_on != "last":
        raise ValueError(f"{name}: one label per window needs loss_on='last'")
    if s.y.ndim not in (1, 2):
        raise ValueError(f"{name}: class labels must be [N] or [N, T]; got {s.y.shape}")
    if not np.issubdtype(s.y.dtype, np.integer):
        raise ValueError(f"{name}: class labels must be integers; got {s.y.dtype}")
    valid = s.y if s.y.ndim == 1 else s.y[s.valid_mask()]
    if valid.size and (valid.min() < 0 or valid.max() >= spec.n_outputs):
        raise ValueError(
            f"{name}: class labels must be in [0, {spec.n_outputs}); "
            f"got {int(valid.min())}..{int(valid.max())}"
        )
