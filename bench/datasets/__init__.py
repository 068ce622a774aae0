"""Benchmark datasets as :class:`liquidcore.data.DatasetSplits` (train / valid / test).

- ``walker2d``: next-state regression with irregular steps (the CfC paper's rollouts; a path);
- ``xor`` / ``xor_dense``: parity of a bit stream, event-coded / dense (the paper's seeds);
- ``lorenz``: forecasts of an irregularly observed Lorenz-63 system (generated);
- ``basic_motions``: 4 smartwatch activities, subsampled (files shipped in the sktime wheel).
"""

from bench.datasets.basic_motions import load_basic_motions
from bench.datasets.lorenz import load_lorenz
from bench.datasets.walker2d import load_walker2d
from bench.datasets.xor import load_xor

__all__ = ["load_basic_motions", "load_lorenz", "load_walker2d", "load_xor"]
