"""Irregular smartwatch recordings for the demo: BasicMotions, with readings dropped at random.

BasicMotions (UEA/UCR time-series classification archive) holds 80 recordings (40 train,
40 test) of a smartwatch's 3-D accelerometer and 3-D gyroscope sampled at 10 Hz for 10 s,
each labelled with one activity: standing, walking, running or badminton. The files ship inside
the ``sktime`` wheel (``sktime/datasets/data/BasicMotions/*.ts``); they are read from the
installed package's folder without importing sktime and without any download.

Irregular sampling protocol (the same for training, the model card and ``liquid demo``): each
reading is kept independently with probability ``keep`` from a seeded ``RandomState``, so the
time between kept readings is a random multiple of 0.1 s. A recording's event times are the
original reading times of its kept readings (offsets in seconds from the recording's start), so
Δt comes from the real timestamps. The first event of a stream gets the model's default Δt
(0.1 s), as the service gives it.

Pure data code: numpy in, numpy out; nothing here touches the network or the model.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

PERIOD_S = 0.1  # seconds between the original readings (10 Hz)
FEATURES = ("acc_x", "acc_y", "acc_z", "gyr_x", "gyr_y", "gyr_z")
ACTIVITIES = ("standing", "walking", "running", "badminton")
# The test recordings the model card scores and `liquid demo` replays: one fixed draw.
TEST_KEEP = 0.6
TEST_SEED = 20_240
MIN_EVENTS = 2  # a recording keeps at least this many readings

Part = Literal["train", "test"]
PARTS: tuple[str, ...] = ("train", "test")


class DataMissingError(ValueError):
    """The BasicMotions files are not installed (sktime is missing)."""


@dataclass(frozen=True)
class Recording:
    """One irregularly observed recording.

    ``offsets`` are seconds since the recording started (float64, strictly increasing),
    ``x`` the readings ``[n, 6]`` in :data:`FEATURES` order, ``activity`` its label.
    """

    name: str
    activity: str
    offsets: npt.NDArray[np.float64]
    x: npt.NDArray[np.float32]

    def __post_init__(self) -> None:
        if self.x.ndim != 2 or self.x.shape[1] != len(FEATURES):
            raise ValueError(f"x must be [n, {len(FEATURES)}]; got {list(self.x.shape)}")
        if self.offsets.shape != (self.x.shape[0],):
            raise ValueError("offsets must have one time per reading")
        if self.x.shape[0] and np.any(np.diff(self.offsets) <= 0):
            raise ValueError("offsets must be strictly increasing")

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def label(self) -> int:
        return ACTIVITIES.index(self.activity)

    def dt(self, first_dt: float = PERIOD_S) -> npt.NDArray[np.float64]:
        """Δt before each reading (seconds); the first is ``first_dt`` (the model's default)."""
        return np.concatenate([[first_dt], np.diff(self.offsets)])

    def features(self, i: int) -> dict[str, float]:
        """Reading ``i`` as a named event body ``{"acc_x": ..., ...}``."""
        return {name: float(v) for name, v in zip(FEATURES, self.x[i], strict=True)}


def data_dir() -> Path:
    """The BasicMotions folder inside the installed sktime package."""
    spec = importlib.util.find_spec("sktime")
    if spec is None or not spec.submodule_search_locations:
        raise DataMissingError(
            "the demo recordings come from the sktime package, which ships the BasicMotions "
            "files: pip install sktime (or pip install 'liquidstream[bench]')"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"
    folder = folder / "BasicMotions"
    if not (folder / "BasicMotions_TEST.ts").is_file():
        raise DataMissingError(f"the installed sktime has no BasicMotions files in {folder}")
    return folder


def read_ts(path: str | Path) -> tuple[npt.NDArray[np.float32], list[str]]:
    """Parse an equal-length multivariate ``.ts`` file: ``(x[N, T, D], labels)``."""
    series: list[npt.NDArray[np.float32]] = []
    labels: list[str] = []
    in_data = False
    for lineno, raw in enumerate(Path(path).read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not in_data:
            in_data = line.lower().startswith("@data")
            continue
        *dims, label = line.split(":")
        try:
            arr = np.array([[float(v) for v in d.split(",")] for d in dims], dtype=np.float32)
        except ValueError as exc:
            raise ValueError(f"{path}:{lineno}: not a numeric series ({exc})") from exc
        series.append(arr.T)
        labels.append(label.strip().lower())
    if not series:
        raise ValueError(f"{path}: no @data rows")
    if len({s.shape for s in series}) != 1:
        raise ValueError(f"{path}: series of unequal shapes")
    return np.stack(series), labels


def load_part(
    part: str, folder: str | Path | None = None
) -> tuple[npt.NDArray[np.float32], list[str]]:
    """The regular recordings of ``part`` (``train`` or ``test``): ``(x[N, 100, 6], labels)``."""
    if part not in PARTS:
        raise ValueError(f"unknown part {part!r}; valid: {', '.join(PARTS)}")
    root = Path(folder) if folder is not None else data_dir()
    x, labels = read_ts(root / f"BasicMotions_{part.upper()}.ts")
    unknown = sorted(set(labels) - set(ACTIVITIES))
    if unknown or x.shape[2] != len(FEATURES):
        raise ValueError(f"{root}: unexpected BasicMotions content (labels {unknown})")
    return x, labels


def keep_indices(steps: int, keep: float, rng: np.random.RandomState) -> npt.NDArray[np.int64]:
    """Indices of the readings kept (each with probability ``keep``; at least
    :data:`MIN_EVENTS`, topped up from the dropped ones in order)."""
    if not 0.0 < keep <= 1.0:
        raise ValueError(f"keep must be in (0, 1]; got {keep}")
    draws = rng.rand(steps)
    kept = np.flatnonzero(draws < keep)
    if kept.size < min(MIN_EVENTS, steps):
        kept = np.sort(np.argsort(draws, kind="stable")[: min(MIN_EVENTS, steps)])
    return kept.astype(np.int64)


def irregular(
    x: npt.NDArray[np.float32],
    activities: Sequence[str],
    *,
    keep: float,
    seed: int,
    prefix: str,
) -> list[Recording]:
    """Subsample each regular recording ``x[i]`` (``[T, 6]``) with one seeded generator."""
    rng = np.random.RandomState(seed)
    out = []
    for i, activity in enumerate(activities):
        kept = keep_indices(x.shape[1], keep, rng)
        out.append(
            Recording(
                name=f"{prefix}-{i:02d}",
                activity=activity,
                offsets=kept.astype(np.float64) * PERIOD_S,
                x=np.ascontiguousarray(x[i, kept]),
            )
        )
    return out


def held_out_recordings(
    *, keep: float = TEST_KEEP, seed: int = TEST_SEED, folder: str | Path | None = None
) -> list[Recording]:
    """The 40 held-out test recordings in the fixed irregular draw (model card, demo)."""
    x, labels = load_part("test", folder)
    return irregular(x, labels, keep=keep, seed=seed, prefix="test")


def to_arrays(
    recordings: Sequence[Recording], first_dt: float = PERIOD_S
) -> tuple[
    npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.int64], npt.NDArray[np.bool_]
]:
    """Pad recordings to one length: ``x[N, T, 6]``, ``dt[N, T]`` (seconds), per-event labels
    ``y[N, T]`` and ``mask[N, T]`` (False after a recording's end)."""
    if not recordings:
        raise ValueError("no recordings")
    n, T = len(recordings), max(len(r) for r in recordings)
    x = np.zeros((n, T, len(FEATURES)), dtype=np.float32)
    dt = np.zeros((n, T), dtype=np.float32)
    y = np.zeros((n, T), dtype=np.int64)
    mask = np.zeros((n, T), dtype=np.bool_)
    for i, r in enumerate(recordings):
        k = len(r)
        x[i, :k] = r.x
        dt[i, :k] = r.dt(first_dt)
        y[i, :] = r.label
        mask[i, :k] = True
    return x, dt, y, mask
