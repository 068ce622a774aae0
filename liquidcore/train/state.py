"""The training state of a resumable run: tensors in safetensors, everything else in JSON.

No pickle: the optimiser's ``state_dict`` is flattened (its tensors to ``optimizer.safetensors``
under ``state.<param>.<name>``, its other values and ``param_groups`` to JSON), RNG states go to
safetensors (torch) and JSON (python, numpy). The state directory is replaced as a whole
(written beside, then renamed), so an interrupted save leaves the previous state readable.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

STATE_DIR = "state"
STATE_FORMAT = 1
_MODEL = "model.safetensors"
_BEST = "best.safetensors"
_OPTIM = "optimizer.safetensors"
_RNG = "rng.safetensors"
_META = "state.json"


def _cpu(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}


def _jsonable(value: Any) -> Any:
    """Tuples become ``{"__tuple__": [...]}`` so that they come back as tuples."""
    if isinstance(value, tuple):
        return {"__tuple__": [_jsonable(v) for v in value]}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot store {type(value).__name__} in the training state JSON")


def _from_json(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__tuple__"}:
            return tuple(_from_json(v) for v in value["__tuple__"])
        return {k: _from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value


def flatten_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """``optimizer.state_dict()`` as (tensors, JSON-able rest)."""
    sd = optimizer.state_dict()
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, entry in sd["state"].items():
        for name, value in entry.items():
            if isinstance(value, Tensor):
                tensors[f"state.{pid}.{name}"] = value
            else:
                scalars.setdefault(str(pid), {})[name] = _jsonable(value)
    rest = {"param_groups": _jsonable(sd["param_groups"]), "scalars": scalars}
    return _cpu(tensors), rest


def unflatten_optimizer(tensors: dict[str, Tensor], rest: dict[str, Any]) -> dict[str, Any]:
    """Invert :func:`flatten_optimizer` into a ``state_dict`` for ``load_state_dict``."""
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        _, pid, name = key.split(".", 2)
        state.setdefault(int(pid), {})[name] = value
    for pid, entry in rest.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(_from_json(entry))
    return {"state": state, "param_groups": _from_json(rest["param_groups"])}


def rng_state() -> tuple[dict[str, Tensor], dict[str, Any]]:
    """torch (CPU and CUDA), numpy and python global RNG states."""
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{i}"] = s
    kind, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    meta = {
        "python": _jsonable(random.getstate()),
        "numpy": {
            "kind": kind,
            "keys": np.asarray(keys).tolist(),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
    }
    return _cpu(tensors), meta


def set_rng_state(tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("cuda."))]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    random.setstate(_from_json(meta["python"]))
    n = meta["numpy"]
    np.random.set_state(
        (n["kind"], np.asarray(n["keys"], dtype=np.uint32), n["pos"], n["has_gauss"], n["gauss"])
    )


def save_training_state(
    run_dir: str | Path,
    *,
    model: nn.Module,
    best: dict[str, Tensor] | None,
    optimizer: torch.optim.Optimizer,
    meta: dict[str, Any],
) -> Path:
    """Write ``run_dir/state`` (model, best weights, optimiser, RNG, JSON meta) atomically."""
    root = Path(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / STATE_DIR
    tmp = root / (STATE_DIR + ".new")
    old = root / (STATE_DIR + ".old")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    save_file(_cpu(model.state_dict()), str(tmp / _MODEL))
    if best is not None:
        save_file(_cpu(best), str(tmp / _BEST))
    opt_tensors, opt_rest = flatten_optimizer(optimizer)
    save_file(opt_tensors, str(tmp / _OPTIM))
    rng_tensors, rng_meta = rng_state()
    save_file(rng_tensors, str(tmp / _RNG))
    body = {
        "format_version": STATE_FORMAT,
        "meta": _jsonable(meta),
        "optimizer": opt_rest,
        "rng": rng_meta,
        "has_best": best is not None,
    }
    (tmp / _META).write_text(json.dumps(body, indent=1, allow_nan=True))
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    if old.exists():
        shutil.rmtree(old)
    return final


def state_path(run_dir: str | Path) -> Path | None:
    """The readable state directory of a run, if any (recovering from an interrupted save)."""
    root = Path(run_dir)
    for name in (STATE_DIR, STATE_DIR + ".old"):
        p = root / name
        if (p / _META).is_file():
            return p
    return None


def load_training_state(
    run_dir: str | Path, *, model: nn.Module, optimizer: torch.optim.Optimizer
) -> tuple[dict[str, Any], dict[str, Tensor] | None]:
    """Restore model, optimiser and RNG states; returns (meta, best weights or None)."""
    p = state_path(run_dir)
    if p is None:
        raise ValueError(f"no training state in {str(run_dir)!r}")
    body = json.loads((p / _META).read_text())
    if body.get("format_version") != STATE_FORMAT:
        raise ValueError(
            f"training state {str(p)!r} has format {body.get('format_version')!r}; "
            f"this version reads {STATE_FORMAT}"
        )
    device = next(model.parameters()).device
    model.load_state_dict(load_file(str(p / _MODEL), device=str(device)))
    optimizer.load_state_dict(unflatten_optimizer(load_file(str(p / _OPTIM)), body["optimizer"]))
    set_rng_state(load_file(str(p / _RNG)), body["rng"])
    best = load_file(str(p / _BEST)) if body.get("has_best") else None
    return _from_json(body["meta"]), best
