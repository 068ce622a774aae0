"""Import models trained with the ``ncps`` package (1.0.1, ``ncps.torch``).

``from_ncps(module)`` turns an ncps ``LTC``, ``CfC`` (plain, wired, mixed memory, ``proj_size``)
or a bare ``LTCCell`` / ``CfCCell`` / ``WiredCfCCell`` into a :class:`LiquidModel` carrying the
same weights: its ``forward(x, dt)`` gives the ncps module's outputs and final state (to float32
round-off), and it is right where ncps is wrong (per-sample Δt, Δt = 0 in LTC).

Hyper-parameters are read from the module object. What an ncps ``state_dict`` alone does not
record (LTC constraint mode, ``ode_unfolds`` and ``epsilon``, CfC activation and ``no_gate`` vs
``default``, the wiring) must be passed to ``load_ncps_state_dict``; it raises ``ValueError``
naming what is missing. ncps itself is needed only here, and imported lazily.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from liquidcore.cells.base import LiquidCell
from liquidcore.compat.ncps_wirings import wiring_from_ncps
from liquidcore.heads import ReadoutHead
from liquidcore.model import LiquidModel
from liquidcore.wirings import Wiring

# Keyword arguments of from_ncps that describe the served model rather than the cell.
MODEL_KEYS = ("time_unit", "default_dt", "feature_names", "output_names", "name", "head_kind")


def _ncps() -> Any:
    try:
        import ncps.torch
        import ncps.wirings
    except ImportError as exc:  # pragma: no cover - ncps is a dev dependency
        raise ImportError("importing ncps models needs the ncps package: pip install ncps") from exc
    return ncps


def _activation_name(backbone: nn.Module | None, override: str | None) -> str:
    if override is not None:
        return override
    if backbone is None:
        return "lecun_tanh"  # no backbone: the activation is never used
    nc = _ncps()
    table: list[tuple[type[nn.Module], str]] = [
        (nc.torch.cfc_cell.LeCun, "lecun_tanh"),
        (nn.SiLU, "silu"),
        (nn.ReLU, "relu"),
        (nn.Tanh, "tanh"),
        (nn.GELU, "gelu"),
    ]
    for module in backbone.modules():
        for cls, name in table:
            if type(module) is cls:
                return name
    raise ValueError("cannot tell the backbone activation of this ncps CfCCell; pass activation=")


def _cfc_cell(cell: Any, config: Mapping[str, Any]) -> LiquidCell:
    from liquidcore.cells.cfc import CfCCell

    backbone = cell.backbone if cell.backbone_layers > 0 else None
    dropouts = [m.p for m in backbone.modules() if isinstance(m, nn.Dropout)] if backbone else []
    mask = None
    if cell.sparsity_mask is not None:
        mask = cell.sparsity_mask.detach().T.cpu().numpy()  # back to ncps's [features, hidden]
    return CfCCell(
        cell.input_size,
        cell.hidden_size,
        mode=config.get("mode", cell.mode),
        backbone_activation=_activation_name(backbone, config.get("activation")),
        backbone_units=backbone[0].out_features if backbone is not None else 0,
        backbone_layers=cell.backbone_layers,
        backbone_dropout=dropouts[0] if dropouts else float(config.get("backbone_dropout", 0.0)),
        sparsity_mask=mask,
    )


def _mapping(value: Any) -> str:
    # ncps applies "affine" and "linear" and treats every other value (None included) as none.
    return value if value in ("affine", "linear") else "none"


def _ltc_cell(cell: Any, config: Mapping[str, Any]) -> LiquidCell:
    from liquidcore.cells.ltc import LTCCell

    return LTCCell(
        wiring_from_ncps(cell._wiring, seed=config.get("wiring_seed")),
        input_mapping=_mapping(cell._input_mapping),
        output_mapping=_mapping(cell._output_mapping),
        ode_unfolds=cell._ode_unfolds,
        epsilon=cell._epsilon,
        implicit_param_constraints=cell._implicit_param_constraints,
        solver=config.get("solver", "semi_implicit"),
    )


def _inner_cell(rnn_cell: Any, config: Mapping[str, Any]) -> LiquidCell:
    nc = _ncps()
    if isinstance(rnn_cell, nc.torch.LTCCell):
        return _ltc_cell(rnn_cell, config)
    if isinstance(rnn_cell, nc.torch.WiredCfCCell):
        from liquidcore.cells.cfc import WiredCfCCell

        wiring = wiring_from_ncps(rnn_cell._wiring, seed=config.get("wiring_seed"))
        return WiredCfCCell(wiring.input_dim, wiring, mode=rnn_cell._layers[0].mode)
    if isinstance(rnn_cell, nc.torch.CfCCell):
        return _cfc_cell(rnn_cell, config)
    raise ValueError(f"not an ncps.torch cell: {type(rnn_cell).__name__}")


def from_ncps(module: nn.Module, **config: Any) -> LiquidModel:
    """A :class:`LiquidModel` with the weights of an ncps.torch module (see the module doc).

    ``config`` may name ``activation``, ``backbone_dropout``, ``solver`` and ``wiring_seed`` (the
    seed of an ncps ``NCP`` wiring, which ncps does not store) for the cell and
    ``time_unit``, ``default_dt``, ``feature_names``, ``output_names``, ``name``,
    ``head_kind`` ("regression" or "classification") for the model.
    """
    nc = _ncps()
    wrapper = isinstance(module, (nc.torch.CfC, nc.torch.LTC))
    rnn_cell = module.rnn_cell if wrapper else module
    mixed = bool(wrapper and module.use_mixed)
    cell = _inner_cell(rnn_cell, config)
    prefix = "rnn_cell." if wrapper else ""
    key_map = dict(cell.ncps_key_map(prefix))  # type: ignore[operator]
    if mixed:
        from liquidcore.cells.mixed import MixedMemoryCell

        cell = MixedMemoryCell(cell)
        key_map = cell.ncps_key_map("")
    fc = getattr(module, "fc", None)
    proj = fc if isinstance(fc, nn.Linear) else None
    head = ReadoutHead(
        cell.output_size,
        proj.out_features if proj is not None else None,
        kind=config.get("head_kind", "regression"),
    )
    model = LiquidModel(cell, head, **{k: config[k] for k in MODEL_KEYS[:-1] if k in config})
    source = module.state_dict()
    if proj is not None:
        key_map.update({"fc.weight": "head.linear.weight", "fc.bias": "head.linear.bias"})
    state = _translate(source, key_map, model)
    model.load_state_dict(state, strict=True)
    p = next(module.parameters())
    return model.to(device=p.device, dtype=p.dtype).train(module.training)


def _translate(
    source: Mapping[str, Tensor], key_map: Mapping[str, str], model: LiquidModel
) -> dict[str, Tensor]:
    target = model.state_dict()
    state: dict[str, Tensor] = {}
    for theirs, ours in key_map.items():
        full = ours if ours.startswith("head.") else f"cell.{ours}"
        if theirs not in source:
            raise ValueError(f"the ncps state_dict lacks {theirs!r}")
        value = source[theirs].detach()
        if value.shape != target[full].shape:
            raise ValueError(
                f"ncps {theirs!r} has shape {list(value.shape)}, ours {full!r} needs "
                f"{list(target[full].shape)}: the config does not match the weights"
            )
        state[full] = value.to(target[full].dtype).clone()
    unused = sorted(set(source) - set(key_map))
    if unused:
        raise ValueError(f"ncps state_dict keys not understood: {unused}")
    return state


# -- a bare state_dict --------------------------------------------------------------------------

_LTC_REQUIRED = ("implicit_param_constraints", "ode_unfolds")


def _ncps_wiring(wiring: Any, seed: int | None) -> Any:
    """A fresh, unbuilt ncps wiring equal to ``wiring`` (ours, or an ncps one).

    ncps's ``build`` is not idempotent (an NCP draws its synapses again), so a wiring that an
    ncps module already built must never be handed to another: it goes through our class and
    back through ncps's constructor.
    """
    nc = _ncps()
    if isinstance(wiring, nc.wirings.Wiring):
        wiring = wiring_from_ncps(wiring, seed=seed)
    if not isinstance(wiring, Wiring):
        raise ValueError(f"wiring must be a liquidcore or ncps wiring; got {type(wiring).__name__}")
    config = wiring.get_config()
    classes = {
        "fully_connected": nc.wirings.FullyConnected,
        "random": nc.wirings.Random,
        "ncp": nc.wirings.NCP,
        "auto_ncp": nc.wirings.AutoNCP,
    }
    if config["type"] not in classes:
        raise ValueError(f"a {config['type']!r} wiring has no ncps twin; pass an ncps wiring")
    return classes[config["type"]](
        **{k: v for k, v in config.items() if k not in ("type", "input_dim")}
    )


def load_ncps_state_dict(path: str | Path | Mapping[str, Tensor], **config: Any) -> LiquidModel:
    """A :class:`LiquidModel` from an ncps ``CfC``/``LTC`` state_dict (a ``torch.save`` file,
    read with ``weights_only=True``, a safetensors file, or the mapping itself).

    Required: ``kind`` ("cfc" or "ltc") and ``input_size``. For LTC also ``wiring`` (or
    ``units``), ``implicit_param_constraints`` and ``ode_unfolds`` (``epsilon`` defaults to
    1e-8); for CfC ``units`` or ``wiring``, ``mode`` and ``activation`` (``backbone_dropout``
    defaults to 0). Mixed memory and ``proj_size`` are read from the keys.
    """
    state = _read_state_dict(path)
    kind = config.pop("kind", None)
    if kind not in ("cfc", "ltc"):
        raise ValueError("pass kind='cfc' or kind='ltc': a state_dict does not say which it is")
    if "input_size" not in config:
        raise ValueError("pass input_size=: the number of input features")
    nc = _ncps()
    mixed = any(k.startswith("lstm.") for k in state)
    units: Any = config.pop("wiring", None)
    if units is not None:
        units = _ncps_wiring(units, config.get("wiring_seed"))
    else:
        units = config.pop("units", None)
    if units is None:
        raise ValueError("pass wiring= (or units= for a fully connected model)")
    input_size = config.pop("input_size")
    if kind == "ltc":
        missing = [k for k in _LTC_REQUIRED if k not in config]
        if missing:
            raise ValueError(f"an ncps LTC state_dict does not record {missing}: pass them")
        module: nn.Module = nc.torch.LTC(
            input_size,
            units,
            mixed_memory=mixed,
            input_mapping=config.pop("input_mapping", "affine"),
            output_mapping=config.pop("output_mapping", "affine"),
            ode_unfolds=config.pop("ode_unfolds"),
            epsilon=config.pop("epsilon", 1e-8),
            implicit_param_constraints=config.pop("implicit_param_constraints"),
        )
    else:
        wired = isinstance(units, nc.wirings.Wiring)
        missing = [k for k in ("mode",) + (() if wired else ("activation",)) if k not in config]
        if missing:
            raise ValueError(f"an ncps CfC state_dict does not record {missing}: pass them")
        proj = state.get("fc.weight")
        backbone = {} if wired else _backbone_from_keys(state, config)
        module = nc.torch.CfC(
            input_size,
            units,
            proj_size=int(proj.shape[0]) if proj is not None else None,
            mixed_memory=mixed,
            mode=config.pop("mode"),
            activation=config.get("activation", "lecun_tanh"),
            **backbone,
        )
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"the state_dict does not fit the given config: {exc}") from exc
    return from_ncps(module.eval(), **config)


def _backbone_from_keys(state: Mapping[str, Tensor], config: dict[str, Any]) -> dict[str, Any]:
    first = state.get("rnn_cell.backbone.0.weight")
    if first is None:
        return {"backbone_units": 0, "backbone_layers": 0, "backbone_dropout": 0.0}
    linear_keys = [k for k in state if k.startswith("rnn_cell.backbone.") and k.endswith(".weight")]
    return {
        "backbone_units": int(first.shape[0]),
        "backbone_layers": len(linear_keys),
        "backbone_dropout": float(config.pop("backbone_dropout", 0.0)),
    }


def _read_state_dict(path: str | Path | Mapping[str, Tensor]) -> dict[str, Tensor]:
    if isinstance(path, Mapping):
        return dict(path)
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"no state_dict file at {p}")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        return dict(load_file(str(p)))
    loaded = torch.load(p, map_location="cpu", weights_only=True)
    if isinstance(loaded, nn.Module):  # pragma: no cover - weights_only refuses modules
        loaded = loaded.state_dict()
    if not isinstance(loaded, Mapping):
        raise ValueError(f"{p} does not hold a state_dict (a mapping of names to tensors)")
    return dict(loaded)
