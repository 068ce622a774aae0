"""Saving and loading trained models as artifact directories.

Every trained model, liquid or baseline, is a :class:`liquidcore.LiquidModel`, written by
:mod:`liquidcore.checkpoint` in the format the service serves (``config.json`` with
``format_version``, a content-hash ``version`` and the weights' SHA-256, plus
``weights.safetensors``). No pickle. Artifacts of the former ``RecurrentBaseline`` format
(``model.type = "baseline"``) are refused with a message: retrain them.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from liquidcore.checkpoint import ArtifactError, load_model, read_config, save_model
from liquidcore.model import LiquidModel


def save_artifact(model: nn.Module, path: str | Path) -> str:
    """Write ``model`` as an artifact directory; returns its version (content hash)."""
    if not isinstance(model, LiquidModel):
        raise TypeError(f"cannot save a {type(model).__name__} as an artifact")
    return save_model(model, path)


def load_artifact(path: str | Path, device: torch.device | str = "cpu") -> LiquidModel:
    """Load an artifact (eval mode)."""
    if (read_config(path).get("model") or {}).get("type") == "baseline":
        raise ArtifactError(
            f"{path}: a baseline artifact of the format before baselines became cells "
            "(liquidcore.cells.recurrent); retrain it to get a servable artifact"
        )
    return load_model(path, device=device)
