"""Bit-stream XOR (parity) with event-based and dense encodings (CfC paper protocol).

Each sample is a random bit stream of ``rng.randint(2, pad_size)`` bits; the label is the XOR
(parity) of all bits. The event-based encoding emits a bit only when it differs from the
previous one, with the elapsed time since the previous emission (so a run's length is carried by
time alone), and flushes the final run's remaining length at the end; it stops after
``pad_size - 1`` events. The dense encoding emits every bit with elapsed time 1. Elapsed times
are divided by ``pad_size``; padding steps are masked. Generation follows
``irregular_sampled_datasets.XORData`` draw for draw (``RandomState``), so a seed gives the
paper's samples: train 100,000 with seed 1234984, test 10,000 with seed 48736, ``pad_size`` 32
(``train_xor.py``). The paper had no validation set; ours is 10,000 more samples from seed
291847 (used to keep the best epoch).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from liquidcore.data import DatasetSplits, SequenceSet, TaskSpec

PAD_SIZE = 32
TRAIN_SEED, TEST_SEED, VALID_SEED = 1234984, 48736, 291847
TRAIN_SIZE, TEST_SIZE, VALID_SIZE = 100_000, 10_000, 10_000


def event_sample(
    rng: np.random.RandomState, pad_size: int
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.bool_], int, list[int]]:
    """One event-coded sample: (events, elapsed, mask, label, the raw bits drawn)."""
    label = 0
    events = np.zeros(pad_size, dtype=np.float32)
    elapsed = np.zeros(pad_size, dtype=np.float32)
    mask = np.zeros(pad_size, dtype=np.bool_)
    last_char = -1
    write_index = 0
    elapsed_counter = 0
    bits: list[int] = []
    length = rng.randint(low=2, high=pad_size)
    char = 0
    for _ in range(length):
        elapsed_counter += 1
        char = int(rng.randint(low=0, high=2))
        bits.append(char)
        label += char
        if last_char != char:
            events[write_index] = char
            elapsed[write_index] = elapsed_counter
            mask[write_index] = True
            write_index += 1
            elapsed_counter = 0
            if write_index >= pad_size - 1:
                break  # enough events: the paper's loader aborts the sample here
        last_char = char
    if elapsed_counter > 0:
        events[write_index] = char
        elapsed[write_index] = elapsed_counter
        mask[write_index] = True
    return events, elapsed, mask, label % 2, bits


def dense_sample(
    rng: np.random.RandomState, pad_size: int
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.bool_], int, list[int]]:
    """One densely coded sample: every bit is an event with elapsed time 1."""
    events = np.zeros(pad_size, dtype=np.float32)
    elapsed = np.zeros(pad_size, dtype=np.float32)
    mask = np.zeros(pad_size, dtype=np.bool_)
    length = rng.randint(low=2, high=pad_size)
    bits = [int(rng.randint(low=0, high=2)) for _ in range(length)]
    events[:length] = bits
    elapsed[:length] = 1
    mask[:length] = True
    return events, elapsed, mask, sum(bits) % 2, bits


def make_xor_set(
    size: int,
    seed: int,
    *,
    pad_size: int = PAD_SIZE,
    event_based: bool = True,
    dt_unit: float | None = None,
) -> tuple[SequenceSet, dict[str, Any]]:
    """``size`` samples from ``RandomState(seed)``; returns the set and generation facts.
    Δt is the elapsed number of bits divided by ``dt_unit`` (default ``pad_size``, as the
    paper; 1 gives Δt in bits)."""
    if pad_size < 3:
        raise ValueError(f"pad_size must be >= 3; got {pad_size}")
    unit = float(pad_size if dt_unit is None else dt_unit)
    if not unit > 0:
        raise ValueError(f"dt_unit must be > 0; got {dt_unit}")
    rng = np.random.RandomState(seed)
    make = event_sample if event_based else dense_sample
    ev, el, mk, lab = [], [], [], []
    for _ in range(size):
        e, t, m, y, _bits = make(rng, pad_size)
        ev.append(e)
        el.append(t)
        mk.append(m)
        lab.append(y)
    s = SequenceSet(
        x=np.stack(ev)[..., None],
        dt=np.stack(el) / np.float32(unit),
        y=np.asarray(lab, dtype=np.int64),
        mask=np.stack(mk),
    )
    return s, {"seed": seed, "size": size, "mean_events": float(s.valid_mask().sum(1).mean())}


def load_xor(
    *,
    event_based: bool = True,
    pad_size: int = PAD_SIZE,
    dt_unit: float | None = None,
    train_size: int = TRAIN_SIZE,
    valid_size: int = VALID_SIZE,
    test_size: int = TEST_SIZE,
) -> DatasetSplits:
    """Train / valid / test XOR sets; classification of the parity at the last event.
    ``dt_unit``: see :func:`make_xor_set`."""
    kw: dict[str, Any] = {"pad_size": pad_size, "event_based": event_based, "dt_unit": dt_unit}
    train, ti = make_xor_set(train_size, TRAIN_SEED, **kw)
    valid, vi = make_xor_set(valid_size, VALID_SEED, **kw)
    test, si = make_xor_set(test_size, TEST_SEED, **kw)
    unit = float(pad_size if dt_unit is None else dt_unit)
    spec = TaskSpec(
        task="classification",
        n_features=1,
        n_outputs=2,
        loss_on="last",
        feature_names=("bit",),
        output_names=("even", "odd"),
        time_unit=1.0,
        default_dt=1.0 / unit,
    )
    info = {
        "benchmark": "xor" if event_based else "xor_dense",
        "pad_size": pad_size,
        "dt_unit": unit,
        "encoding": "event" if event_based else "dense",
        "sets": {"train": ti, "valid": vi, "test": si},
    }
    return DatasetSplits(spec, train, valid, test, info=info)


def decode_events(
    events: npt.NDArray[np.float32],
    elapsed_steps: npt.NDArray[np.float32],
    mask: npt.NDArray[np.bool_],
) -> list[int]:
    """The bit stream an event-coded sample stands for (elapsed in whole steps).

    Event ``k`` carries the length of run ``k - 1`` as its elapsed time; a final event with the
    same bit as the one before it is the flush, carrying the last run's length minus one.
    """
    n = int(mask.sum())
    bits_of = [int(v) for v in events[:n]]
    gaps = [round(float(v)) for v in elapsed_steps[:n]]
    flush = n >= 2 and bits_of[-1] == bits_of[-2]
    changes = n - 1 if flush else n
    runs = [gaps[k + 1] for k in range(changes - 1)]
    runs.append(gaps[changes] + 1 if flush else 1)
    out: list[int] = []
    for bit, run in zip(bits_of[:changes], runs, strict=True):
        out.extend([bit] * run)
    return out
