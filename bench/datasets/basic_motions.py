"""BasicMotions (UEA): smartwatch accelerometer + gyroscope, 4 activities, irregularly observed.

80 recordings (40 train, 40 test) of 6 channels (3-D acceleration, 3-D rotation rate) sampled
at 10 Hz for 10 s, labelled Standing, Running, Walking or Badminton. The files come from the
``sktime`` wheel, which ships them (``sktime/datasets/data/BasicMotions/*.ts``); they are read
from the installed package's folder without importing sktime or downloading anything.

Irregular sampling: every reading is kept with probability ``keep`` (a seeded ``RandomState``
per set), so Δt between kept readings is a random multiple of 0.1 s; windows are the whole
recordings, padded at the end (masked). The label is predicted at the last kept reading.
Validation: ``valid_per_class`` recordings of each class held out of the training file.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from liquidcore.data import DatasetSplits, SequenceSet, TaskSpec

PERIOD = 0.1  # seconds between readings
CHANNELS = ("acc_x", "acc_y", "acc_z", "gyr_x", "gyr_y", "gyr_z")
CLASSES = ("Standing", "Running", "Walking", "Badminton")
SEEDS = {"train": 5011, "valid": 5012, "test": 5013}


def data_dir() -> Path:
    """The BasicMotions folder inside the installed sktime package."""
    spec = importlib.util.find_spec("sktime")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(
            "BasicMotions needs the sktime package, which ships the data files (pip install sktime)"
        )
    root = Path(next(iter(spec.submodule_search_locations)))
    folder = root / "datasets" / "data" / "BasicMotions"
    if not folder.is_dir():
        raise ValueError(f"the installed sktime has no {folder}")
    return folder


def read_ts(path: str | Path) -> tuple[npt.NDArray[np.float32], list[str], tuple[str, ...]]:
    """Parse an equal-length multivariate ``.ts`` file: ``(x[N, T, D], labels, class names)``."""
    series: list[npt.NDArray[np.float32]] = []
    labels: list[str] = []
    classes: tuple[str, ...] = ()
    in_data = False
    for lineno, raw in enumerate(Path(path).read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not in_data:
            low = line.lower()
            if low.startswith("@classlabel"):
                parts = line.split()
                if len(parts) > 2 and parts[1].lower() == "true":
                    classes = tuple(parts[2:])
            elif low.startswith("@data"):
                in_data = True
            continue
        *dims, label = line.split(":")
        try:
            arr = np.array([[float(v) for v in d.split(",")] for d in dims], dtype=np.float32)
        except ValueError as exc:
            raise ValueError(f"{path}:{lineno}: not a numeric series ({exc})") from exc
        series.append(arr.T)
        labels.append(label.strip())
    if not series:
        raise ValueError(f"{path}: no @data rows")
    lengths = {s.shape for s in series}
    if len(lengths) != 1:
        raise ValueError(f"{path}: series of unequal shapes {sorted(lengths)}")
    return np.stack(series), labels, classes


def subsample(
    x: npt.NDArray[np.float32], keep: float, rng: np.random.RandomState
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
    """Keep each reading with probability ``keep`` (at least one per series); pack the kept
    readings at the front. Returns ``(x, dt seconds, mask)``, each ``[N, T, ...]``."""
    n, T = x.shape[0], x.shape[1]
    xs = np.zeros_like(x)
    dts = np.zeros((n, T), dtype=np.float32)
    masks = np.zeros((n, T), dtype=np.bool_)
    for i in range(n):
        kept = np.flatnonzero(rng.rand(T) < keep)
        if kept.size == 0:
            kept = np.array([T - 1])
        k = kept.size
        xs[i, :k] = x[i, kept]
        # The first kept reading's Δt counts from one period before the recording starts.
        dts[i, :k] = np.diff(np.concatenate([[-1], kept])) * PERIOD
        masks[i, :k] = True
    return xs, dts, masks


def load_basic_motions(
    *,
    keep: float = 0.5,
    valid_per_class: int = 2,
    folder: str | Path | None = None,
    seed: int = 0,
) -> DatasetSplits:
    """Train / valid / test sets of irregularly subsampled BasicMotions recordings."""
    if not 0.0 < keep <= 1.0:
        raise ValueError(f"keep must be in (0, 1]; got {keep}")
    root = Path(folder) if folder is not None else data_dir()
    x_tr, lab_tr, classes = read_ts(root / "BasicMotions_TRAIN.ts")
    x_te, lab_te, _ = read_ts(root / "BasicMotions_TEST.ts")
    classes = classes or tuple(sorted(set(lab_tr)))
    index = {c: i for i, c in enumerate(classes)}
    y_tr = np.array([index[v] for v in lab_tr], dtype=np.int64)
    y_te = np.array([index[v] for v in lab_te], dtype=np.int64)
    pick = np.random.RandomState(seed)
    valid_idx = np.concatenate(
        [pick.permutation(np.flatnonzero(y_tr == c))[:valid_per_class] for c in range(len(classes))]
    )
    train_idx = np.setdiff1d(np.arange(len(y_tr)), valid_idx)

    def make(x: npt.NDArray[np.float32], y: npt.NDArray[np.int64], part: str) -> SequenceSet:
        xs, dt, mask = subsample(x, keep, np.random.RandomState(SEEDS[part] + 1000 * seed))
        return SequenceSet(x=xs, dt=dt, y=y, mask=mask)

    train = make(x_tr[train_idx], y_tr[train_idx], "train")
    valid = make(x_tr[valid_idx], y_tr[valid_idx], "valid")
    test = make(x_te, y_te, "test")
    spec = TaskSpec(
        task="classification",
        n_features=x_tr.shape[2],
        n_outputs=len(classes),
        loss_on="last",
        feature_names=CHANNELS if x_tr.shape[2] == len(CHANNELS) else None,
        output_names=classes,
        time_unit=PERIOD,
        default_dt=PERIOD,
    )
    info: dict[str, Any] = {
        "benchmark": "basic_motions",
        "source": str(root),
        "recordings": {"train": len(train), "valid": len(valid), "test": len(test)},
        "keep": keep,
        "classes": list(classes),
        "mean_kept": float(train.valid_mask().sum(1).mean()),
    }
    return DatasetSplits(spec, train, valid, test, info=info)
