"""liquidcore: liquid time-constant (LTC) and closed-form continuous-time (CfC) networks with
Neural Circuit Policy wirings, stepped by the real elapsed time of every event."""

from liquidcore.cells.base import LiquidCell
from liquidcore.checkpoint import ArtifactError, load_model, save_model
from liquidcore.heads import ReadoutHead
from liquidcore.model import LiquidModel
from liquidcore.timing import check_elapsed, elapsed_for_sequence, elapsed_for_step

__all__ = [
    "ArtifactError",
    "LiquidCell",
    "LiquidModel",
    "ReadoutHead",
    "check_elapsed",
    "elapsed_for_sequence",
    "elapsed_for_step",
    "load_model",
    "save_model",
]
__version__ = "0.1.0"
