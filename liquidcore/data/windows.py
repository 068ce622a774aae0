"""Per-stream windows with Δt from the real timestamps, splits and input normalisation.

A window never crosses streams. Δt of a step is the time since the stream's previous row; the
first row of a stream has no previous row and gets ``default_dt`` (what the service gives a
stream's first event: the model's default Δt, by default the median Δt of the training data).
A window that starts inside a stream keeps the real Δt to the row before it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt

from liquidcore.data.longformat import Stream
from liquidcore.data.sequences import SequenceSet

SplitBy = Literal["stream", "time"]
SPLIT_BY: tuple[str, ...] = ("stream", "time")


def stream_dt(stream: Stream, default_dt: float) -> npt.NDArray[np.float64]:
    """Δt (seconds, float64) before each row of ``stream``."""
    dt = np.empty(len(stream), dtype=np.float64)
    if len(stream) == 0:
        return dt
    dt[0] = default_dt if stream.t_before is None else stream.t[0] - stream.t_before
    dt[1:] = np.diff(stream.t)
    return dt


def median_dt(streams: Sequence[Stream]) -> float:
    """The median spacing of rows within streams (seconds); 1.0 when no stream has two rows."""
    diffs = [np.diff(s.t) for s in streams if len(s) > 1]
    if not diffs:
        return 1.0
    m = float(np.median(np.concatenate(diffs)))
    return m if m > 0 else 1.0


def window_starts(n: int, length: int, stride: int) -> list[int]:
    """Starts of full windows ``[s, s + length)`` in a stream of ``n`` rows."""
    return list(range(0, n - length + 1, stride)) if n >= length else []


def cut_windows(
    streams: Sequence[Stream],
    length: int,
    stride: int,
    *,
    default_dt: float,
    pad_short: bool = False,
) -> SequenceSet:
    """Cut every stream into windows of ``length`` rows every ``stride`` rows.

    A stream shorter than ``length`` is skipped, or with ``pad_short`` becomes one window
    padded at the end (``mask`` False there; padding has x = 0, Δt = 0 and the last target).
    Raises ``ValueError`` when no window results.
    """
    if length < 1 or stride < 1:
        raise ValueError(f"window length and stride must be >= 1; got {length}, {stride}")
    if not streams:
        raise ValueError("no streams to cut into windows")
    xs, dts, ys, masks, owners = [], [], [], [], []
    any_pad = False
    for k, s in enumerate(streams):
        dt = stream_dt(s, default_dt)
        for start in window_starts(len(s), length, stride):
            stop = start + length
            xs.append(s.x[start:stop])
            dts.append(dt[start:stop])
            ys.append(s.y[start:stop])
            masks.append(np.ones(length, dtype=np.bool_))
            owners.append(k)
        if pad_short and 0 < len(s) < length:
            pad = length - len(s)
            any_pad = True
            xs.append(np.concatenate([s.x, np.zeros((pad, s.x.shape[1]), s.x.dtype)]))
            dts.append(np.concatenate([dt, np.zeros(pad)]))
            ys.append(np.concatenate([s.y, np.repeat(s.y[-1:], pad, axis=0)]))
            masks.append(np.arange(length) < len(s))
            owners.append(k)
    if not xs:
        longest = max(len(s) for s in streams)
        raise ValueError(
            f"too few rows for one window: windows need {length} rows of one stream, and the "
            f"longest of {len(streams)} stream(s) has {longest}; lower --window or pass "
            "--pad-short"
        )
    return SequenceSet(
        x=np.stack(xs).astype(np.float32),
        dt=np.stack(dts).astype(np.float32),
        y=np.stack(ys),
        mask=np.stack(masks) if any_pad else None,
        stream=np.asarray(owners, dtype=np.int64),
    )


def split_streams(
    streams: Sequence[Stream], valid_fraction: float, *, by: SplitBy = "stream", seed: int = 0
) -> tuple[list[Stream], list[Stream]]:
    """Hold out ``valid_fraction`` of the data for validation.

    ``by="stream"``: whole streams (a seeded shuffle), so no stream is seen in both parts.
    ``by="time"``: the last ``valid_fraction`` of every stream's rows; the held-out part keeps
    the real Δt to the last training row.
    """
    if not 0.0 < valid_fraction < 1.0:
        raise ValueError(f"valid_fraction must be in (0, 1); got {valid_fraction}")
    if by not in SPLIT_BY:
        raise ValueError(f"unknown split {by!r}; valid: {', '.join(SPLIT_BY)}")
    if by == "stream":
        if len(streams) < 2:
            raise ValueError(
                f"a split by stream needs >= 2 streams; the data has {len(streams)} "
                "(use --split time)"
            )
        order = np.random.RandomState(seed).permutation(len(streams))
        n_valid = min(len(streams) - 1, max(1, round(valid_fraction * len(streams))))
        valid_idx = set(order[:n_valid].tolist())
        train = [s for i, s in enumerate(streams) if i not in valid_idx]
        valid = [s for i, s in enumerate(streams) if i in valid_idx]
        return train, valid
    train, valid = [], []
    for s in streams:
        cut = int(np.floor(len(s) * (1.0 - valid_fraction)))
        if cut > 0:
            train.append(s.slice(0, cut))
        if cut < len(s):
            valid.append(s.slice(cut))
    if not train or not valid:
        raise ValueError("a split by time left no rows on one side; use more rows per stream")
    return train, valid


def fit_normalization(
    streams: Sequence[Stream], eps: float = 1e-6
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Per-feature mean and std over the rows of ``streams`` (each row once, not per window).

    A (near-)constant feature gets std 1 so that it is only centred.
    """
    x = np.concatenate([s.x for s in streams]).astype(np.float64)
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    std = np.where(std > eps * np.maximum(1.0, np.abs(mean)), std, 1.0)
    return mean, std


def fit_target_scale(
    streams: Sequence[Stream], eps: float = 1e-6
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Mean and std of regression targets (for a head that trains on standardised targets)."""
    y = np.concatenate([s.y for s in streams]).astype(np.float64)
    mean = y.mean(axis=0)
    std = y.std(axis=0)
    std = np.where(std > eps * np.maximum(1.0, np.abs(mean)), std, 1.0)
    return mean, std
