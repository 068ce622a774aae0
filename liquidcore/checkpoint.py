"""Model artifacts: a directory with ``config.json`` and ``weights.safetensors``. No pickle.

The config holds every hyper-parameter (cell and wiring, head, normalisation, time unit, names)
and the SHA-256 of the weights file. The model *version* is a SHA-256 over the canonical config
and the weights, so two artifacts with equal content have the same version, and any change to
either gives a new one. Loading needs nothing but the directory, and refuses an unknown
``format_version``, a missing file or weights that do not match their recorded hash.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import nn

from liquidcore.model import LiquidModel

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.safetensors"
VERSION_CHARS = 16  # 64 bits of the content hash: short enough to tag every stored state


class ArtifactError(ValueError):
    """The artifact is missing, altered, of an unknown format or inconsistent."""


def _canonical(config: dict[str, Any]) -> bytes:
    return json.dumps(config, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def content_version(config: dict[str, Any], weights: bytes) -> str:
    """The model version: a hash of the canonical config (without its version) and weights."""
    body = {k: v for k, v in config.items() if k != "version"}
    digest = hashlib.sha256(_canonical(body) + b"\0" + weights).hexdigest()
    return digest[:VERSION_CHARS]


def _weights_bytes(model: nn.Module) -> bytes:
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    return save_safetensors(tensors)


def save_model(model: nn.Module, path: str | Path) -> str:
    """Write ``model`` (a :class:`LiquidModel`, or any module with a ``get_config()`` that its
    loader rebuilds, such as the training baselines) as an artifact directory at ``path``;
    returns (and sets) its version."""
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    weights = _weights_bytes(model)
    config: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "model": model.get_config(),  # type: ignore[operator]
        "weights_sha256": hashlib.sha256(weights).hexdigest(),
        "torch_dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
    }
    config["version"] = content_version(config, weights)
    (out / WEIGHTS_FILE).write_bytes(weights)
    (out / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True, allow_nan=False))
    return _set_version(model, config)


def read_config(path: str | Path) -> dict[str, Any]:
    """The artifact's config, checked for format only (weights not read)."""
    cfg_path = Path(path) / CONFIG_FILE
    if not cfg_path.is_file():
        raise ArtifactError(f"no {CONFIG_FILE} in model artifact {path}")
    try:
        config = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{cfg_path} is not valid JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise ArtifactError(f"{cfg_path} must hold a JSON object")
    fmt = config.get("format_version")
    if fmt != FORMAT_VERSION:
        raise ArtifactError(
            f"unknown artifact format_version {fmt!r} in {cfg_path}; this liquidcore reads "
            f"format_version {FORMAT_VERSION}"
        )
    for key in ("model", "weights_sha256", "version"):
        if key not in config:
            raise ArtifactError(f"{cfg_path} lacks the {key!r} field")
    return config


def read_artifact(path: str | Path) -> tuple[dict[str, Any], bytes]:
    """The config and weights bytes of an artifact, checked against their recorded hashes."""
    config = read_config(path)
    w_path = Path(path) / WEIGHTS_FILE
    if not w_path.is_file():
        raise ArtifactError(f"no {WEIGHTS_FILE} in model artifact {path}")
    weights = w_path.read_bytes()
    if hashlib.sha256(weights).hexdigest() != config["weights_sha256"]:
        raise ArtifactError(f"{w_path} does not match the weights_sha256 recorded in its config")
    if content_version(config, weights) != config["version"]:
        raise ArtifactError(f"{path}: config was altered (its version hash does not match)")
    return config, weights


def load_weights(
    model: nn.Module, config: dict[str, Any], weights: bytes, path: str | Path
) -> None:
    """Put ``weights`` into ``model`` in the artifact's dtype; every tensor must fit exactly."""
    dtype = getattr(torch, str(config.get("torch_dtype", "float32")), None)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ArtifactError(f"{path}: unknown torch_dtype {config.get('torch_dtype')!r}")
    model.to(dtype)
    missing, unexpected = model.load_state_dict(load_safetensors(weights), strict=False)
    if missing or unexpected:
        raise ArtifactError(
            f"{path}: weights do not fit the config (missing {sorted(missing)}, "
            f"unexpected {sorted(unexpected)})"
        )
    _set_version(model, config)


def _set_version(model: nn.Module, config: dict[str, Any]) -> str:
    # A plain attribute (what nn.Module.__setattr__ does for a str); typed access sees tensors.
    version = str(config["version"])
    model.__dict__["version"] = version
    return version


def load_model(path: str | Path, device: torch.device | str = "cpu") -> LiquidModel:
    """Load an artifact directory; the model is in eval mode with ``version`` set."""
    config, weights = read_artifact(path)
    try:
        model = LiquidModel.from_config(config["model"])
    except (KeyError, TypeError) as exc:
        raise ArtifactError(f"{path}: incomplete model config ({exc!r})") from exc
    load_weights(model, config, weights, path)
    return model.to(device).eval()
