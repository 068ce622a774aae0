"""Walker2d kinematics with the CfC paper's irregular-sampling protocol, exactly.

The protocol (Hasani et al. 2022, ``irregular_sampled_datasets.Walker2dImitationData``; see
``shared/data/walker2d/README.md``):

1. rollouts sorted by file name, shuffled with ``numpy.random.RandomState(125487).shuffle``;
   the first ``int(0.15 n)`` are test, up to ``int((0.15 + 0.1) n)`` validation, the rest train;
2. per rollout ``x[t] = obs[t]``, ``y[t] = obs[t + 1]`` for ``t < T - 1`` (float32);
3. one ``RandomState(891374)`` stream shared by train, valid and test, in that order: each step
   is kept when ``rng.rand() < 0.9``; a kept step's elapsed time is 1 + the steps skipped
   before it (counted from the start of its rollout);
4. windows of 64 kept steps starting at ``range(0, n - 64, 16)`` (the upper bound is
   exclusive, as in the original code); loss: MSE over all outputs; no normalisation.

The data path is an argument (an ``.npz`` with one ``rollout_XXX`` array per rollout, or the
original folder of ``.npy`` files); nothing is copied into the repository. Elapsed time is in
simulator steps, and the task's time unit is one step (``dt`` "seconds" = steps).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from liquidcore.data import DatasetSplits, SequenceSet, TaskSpec

FILE_SEED = 125487
SAMPLING_SEED = 891374
KEEP_PROBABILITY = 0.9
SEQ_LEN = 64
TEST_FRACTION = 0.15
VALID_FRACTION = 0.1
DEFAULT_PATH = (
    Path(__file__).resolve().parents[2].parent / "shared/data/walker2d/walker2d_rollouts.npz"
)

Rollouts = list[tuple[str, npt.NDArray[np.float32]]]


def read_rollouts(path: str | Path) -> Rollouts:
    """``(file name, obs[T, 17])`` per rollout, sorted by file name (``rollout_XXX.npy``)."""
    p = Path(path)
    if p.is_dir():
        names = sorted(f.name for f in p.iterdir() if f.name.endswith(".npy"))
        if not names:
            raise ValueError(f"no .npy rollouts in {str(p)!r}")
        return [(n, np.load(p / n).astype(np.float32)) for n in names]
    if not p.is_file():
        raise ValueError(f"Walker2d data {str(p)!r} does not exist (pass --data PATH)")
    with np.load(p) as z:
        keys = sorted(z.files, key=lambda k: k if k.endswith(".npy") else k + ".npy")
        if not keys:
            raise ValueError(f"no arrays in {str(p)!r}")
        return [
            (k if k.endswith(".npy") else k + ".npy", np.asarray(z[k], dtype=np.float32))
            for k in keys
        ]


def split_files(names: list[str]) -> tuple[list[str], list[str], list[str]]:
    """(train, valid, test) file names, exactly as the published loader splits them."""
    files = sorted(names)
    np.random.RandomState(FILE_SEED).shuffle(files)
    test_n = int(TEST_FRACTION * len(files))
    valid_n = int((TEST_FRACTION + VALID_FRACTION) * len(files))
    return files[valid_n:], files[test_n:valid_n], files[:test_n]


def perturb(
    obs: npt.NDArray[np.float32], rng: np.random.RandomState
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Kept ``x``, ``y`` and elapsed steps of one rollout (draws one ``rand`` per step).

    Vectorised, it consumes the stream exactly as the original per-step ``rng.rand()`` loop.
    """
    x, y = obs[:-1], obs[1:]
    keep = rng.rand(x.shape[0]) < KEEP_PROBABILITY
    idx = np.flatnonzero(keep)
    elapsed = np.diff(np.concatenate([[-1], idx])).astype(np.float32)
    return x[idx], y[idx], elapsed


def windows(
    parts: list[tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.float32]]],
    seq_len: int,
) -> SequenceSet:
    xs, ts, ys, owner = [], [], [], []
    for k, (x, y, t) in enumerate(parts):
        for s in range(0, y.shape[0] - seq_len, seq_len // 4):
            xs.append(x[s : s + seq_len])
            ts.append(t[s : s + seq_len])
            ys.append(y[s : s + seq_len])
            owner.append(k)
    if not xs:
        raise ValueError(f"no rollout is longer than {seq_len} kept steps")
    return SequenceSet(
        x=np.stack(xs),
        dt=np.stack(ts),
        y=np.stack(ys),
        stream=np.asarray(owner, dtype=np.int64),
    )


def load_walker2d(path: str | Path = DEFAULT_PATH, seq_len: int = SEQ_LEN) -> DatasetSplits:
    """The three window sets of the published protocol."""
    rollouts = dict(read_rollouts(path))
    train_f, valid_f, test_f = split_files(list(rollouts))
    rng = np.random.RandomState(SAMPLING_SEED)
    perturbed = {
        name: [perturb(rollouts[f], rng) for f in files]
        for name, files in (("train", train_f), ("valid", valid_f), ("test", test_f))
    }
    sets = {name: windows(parts, seq_len) for name, parts in perturbed.items()}
    n_features = next(iter(rollouts.values())).shape[1]
    spec = TaskSpec(
        task="regression",
        n_features=n_features,
        n_outputs=n_features,
        loss_on="all",
        time_unit=1.0,
        default_dt=1.0,
    )
    info: dict[str, Any] = {
        "benchmark": "walker2d",
        "source": str(path),
        "rollouts": {"train": len(train_f), "valid": len(valid_f), "test": len(test_f)},
        "windows": {k: len(v) for k, v in sets.items()},
        "seq_len": seq_len,
        "seeds": {"files": FILE_SEED, "sampling": SAMPLING_SEED},
        "keep_probability": KEEP_PROBABILITY,
        "test_files": test_f,
    }
    return DatasetSplits(spec, sets["train"], sets["valid"], sets["test"], info=info)
