"""Saving and loading trained models of either family as artifact directories.

Liquid models use :mod:`liquidcore.checkpoint` (the format the service serves). Baselines are
written the same way (``config.json`` with ``format_version``, a content-hash ``version`` and
the weights' SHA-256, plus ``weights.safetensors``), with ``model.type = "baseline"`` so that
loading rebuilds the same class. No pickle.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from liquidcore.checkpoint import (
    ArtifactError,
    load_model,
    load_weights,
    read_artifact,
    read_config,
    save_model,
)
from liquidcore.model import LiquidModel
from liquidcore.train.baselines import RecurrentBaseline, baseline_from_config


def save_artifact(model: nn.Module, path: str | Path) -> str:
    """Write ``model`` as an artifact directory; returns its version (content hash)."""
    if not isinstance(model, (LiquidModel, RecurrentBaseline)):
        raise TypeError(f"cannot save a {type(model).__name__} as an artifact")
    return save_model(model, path)


def load_artifact(path: str | Path, device: torch.device | str = "cpu") -> nn.Module:
    """Load a liquid or baseline artifact (eval mode)."""
    config = read_config(path)
    if (config.get("model") or {}).get("type") != "baseline":
        return load_model(path, device=device)
    config, weights = read_artifact(path)
    try:
        model = baseline_from_config(config["model"])
    except (KeyError, TypeError) as exc:
        raise ArtifactError(f"{path}: incomplete baseline config ({exc!r})") from exc
    load_weights(model, config, weights, path)
    return model.to(device).eval()
