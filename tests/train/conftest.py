"""Fixtures for the training tests: small long-format tables with irregular times."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `bench` is a folder of scripts, not an installed package
    sys.path.insert(0, str(ROOT))


def make_frame(
    streams: int = 6, rows: int = 60, seed: int = 0, start: float = 1.7e9
) -> pd.DataFrame:
    """Streams with exponential gaps; ``y`` is a leaky integral of ``u`` over real time (so the
    target depends on Δt), ``label`` its sign as text."""
    rng = np.random.default_rng(seed)
    parts = []
    for s in range(streams):
        gaps = rng.exponential(0.5, size=rows) + 0.01
        t = start + np.cumsum(gaps)
        u = np.sin(0.7 * t + s) + 0.1 * rng.standard_normal(rows)
        v = rng.standard_normal(rows)
        y = np.empty(rows)
        acc = 0.0
        for i in range(rows):
            a = np.exp(-gaps[i])
            acc = a * acc + (1 - a) * u[i]
            y[i] = acc
        parts.append(
            pd.DataFrame(
                {
                    "sensor": f"s{s}",
                    "ts": t,
                    "u": u,
                    "v": v,
                    "y": 3.0 * y + 10.0,
                    "label": np.where(y > 0, "high", "low"),
                }
            )
        )
    # Interleave streams in time, as a real export would.
    return pd.concat(parts).sort_values("ts", kind="stable").reset_index(drop=True)


@pytest.fixture
def frame() -> pd.DataFrame:
    return make_frame()


@pytest.fixture
def csv_path(tmp_path: Path, frame: pd.DataFrame) -> Path:
    path = tmp_path / "data.csv"
    frame.to_csv(path, index=False)
    return path
