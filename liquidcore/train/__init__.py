"""Training and evaluation of liquid models and baselines (``liquid train`` / ``evaluate``).

The trainer works on numpy windows (:mod:`liquidcore.data`) and any model with the sequence
API ``forward(x, dt, h0=None, mask=None) -> (y, h_T)``; plots and progress bars need the
``train`` extra (matplotlib, tqdm), tables need pandas (and pyarrow for Parquet).
"""

from liquidcore.train.config import DataConfig, ModelConfig, OptimConfig, load_config_file
from liquidcore.train.factory import build_model
from liquidcore.train.protocol import SequenceModel, count_parameters, count_parameters_in_use
from liquidcore.train.trainer import (
    FitResult,
    TrainingDivergedError,
    evaluate,
    fit,
    seed_everything,
)

__all__ = [
    "DataConfig",
    "FitResult",
    "ModelConfig",
    "OptimConfig",
    "SequenceModel",
    "TrainingDivergedError",
    "build_model",
    "count_parameters",
    "count_parameters_in_use",
    "evaluate",
    "fit",
    "load_config_file",
    "seed_everything",
]
