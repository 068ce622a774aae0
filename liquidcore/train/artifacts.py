"""Saving and loading trained models of either family as artifact directories.

Liquid models use :mod:`liquidcore.checkpoint` (the format the service serves). Baselines are
written the same way (``config.json`` with ``format_version``, a content-hash ``version`` and
the weights' SHA-256, plus ``weights.safetensors``), with ``model.type = "baseline"`` so that
loading rebuilds the same class. No pickle.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import nn

from liquidcore.checkpoint import (
    CONFIG_FILE,
    FORMAT_VERSION,
    WEIGHTS_FILE,
    ArtifactError,
    content_version,
    load_model,
    read_config,
    save_model,
)
from liquidcore.model import LiquidModel
from liquidcore.train.baselines import RecurrentBaseline, baseline_from_config


def save_artifact(model: nn.Module, path: str | Path) -> str:
    """Write ``model`` as an artifact directory; returns its version (content hash)."""
    if isinstance(model, LiquidModel):
        return save_model(model, path)
    if not isinstance(model, RecurrentBaseline):
        raise TypeError(f"cannot save a {type(model).__name__} as an artifact")
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    weights = save_safetensors(tensors)
    config = {
        "format_version": FORMAT_VERSION,
        "model": model.get_config(),
        "weights_sha256": hashlib.sha256(weights).hexdigest(),
        "torch_dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
    }
    config["version"] = content_version(config, weights)
    (out / WEIGHTS_FILE).write_bytes(weights)
    (out / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True, allow_nan=False))
    model.version = str(config["version"])
    return model.version


def load_artifact(path: str | Path, device: torch.device | str = "cpu") -> nn.Module:
    """Load a liquid or baseline artifact (eval mode)."""
    config = read_config(path)
    if (config.get("model") or {}).get("type") != "baseline":
        return load_model(path, device=device)
    w_path = Path(path) / WEIGHTS_FILE
    if not w_path.is_file():
        raise ArtifactError(f"no {WEIGHTS_FILE} in model artifact {path}")
    weights = w_path.read_bytes()
    if hashlib.sha256(weights).hexdigest() != config["weights_sha256"]:
        raise ArtifactError(f"{w_path} does not match the weights_sha256 recorded in its config")
    if content_version(config, weights) != config["version"]:
        raise ArtifactError(f"{path}: config was altered (its version hash does not match)")
    try:
        model = baseline_from_config(config["model"])
    except (KeyError, TypeError) as exc:
        raise ArtifactError(f"{path}: incomplete baseline config ({exc!r})") from exc
    missing, unexpected = model.load_state_dict(load_safetensors(weights), strict=False)
    if missing or unexpected:
        raise ArtifactError(
            f"{path}: weights do not fit the config (missing {sorted(missing)}, "
            f"unexpected {sorted(unexpected)})"
        )
    model.version = str(config["version"])
    return model.to(device).eval()
