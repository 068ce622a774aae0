"""Build a model (liquid or baseline) from a :class:`ModelConfig` and a task.

Every kind is a :class:`liquidcore.LiquidModel`: liquid kinds are assembled from registered cells
and wirings, baselines from the recurrent cells of :mod:`liquidcore.cells.recurrent`. All get the
same readout head, input normalisation, time unit and names, so the harness, the artifacts and
the service treat them alike.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

from liquidcore.data.sequences import TaskSpec
from liquidcore.heads import ReadoutHead
from liquidcore.model import LiquidModel
from liquidcore.train.config import ModelConfig


def _accepted(fn: Callable[..., Any], options: dict[str, Any], what: str) -> dict[str, Any]:
    """Keep the options ``fn`` takes; refuse a non-default one it does not take."""
    params = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return options
    unknown = sorted(set(options) - set(params))
    if unknown:
        raise ValueError(f"{what} does not take option(s) {unknown}; it takes {sorted(params)}")
    return options


def build_wiring(cfg: ModelConfig, n_outputs: int) -> Any:
    """The wiring of a wired cell: ``fc``, ``random`` or ``ncp`` (AutoNCP)."""
    from liquidcore.wirings import AutoNCP, FullyConnected, Random

    if cfg.wiring == "ncp":
        if cfg.units < 4:
            raise ValueError(f"an NCP wiring needs units >= 4; got {cfg.units}")
        motor = cfg.motor_neurons if cfg.motor_neurons is not None else n_outputs
        motor = min(motor, cfg.units - 3)
        return AutoNCP(cfg.units, motor, sparsity_level=cfg.sparsity, seed=cfg.wiring_seed)
    if cfg.wiring == "random":
        return Random(
            cfg.units, cfg.motor_neurons, sparsity_level=cfg.sparsity, random_seed=cfg.wiring_seed
        )
    return FullyConnected(cfg.units, cfg.motor_neurons)


def build_recurrent_cell(cfg: ModelConfig, n_features: int) -> Any:
    """A baseline's recurrent cell (``lstm``, ``gru``, ``gru_dt``, ``gru_d``, ``ode_rnn``)."""
    from liquidcore.cells.recurrent import RECURRENT_CELLS

    cls = RECURRENT_CELLS.get(cfg.kind)
    if cls is None:
        raise ValueError(
            f"unknown baseline {cfg.kind!r}; valid: {', '.join(sorted(RECURRENT_CELLS))}"
        )
    options = dict(cfg.cell_options)
    if cfg.kind == "ode_rnn":
        options.setdefault("ode_steps", cfg.ode_steps)
    return cls(n_features, cfg.units, **_accepted(cls, options, cls.__name__))


def build_cell(cfg: ModelConfig, n_features: int, n_outputs: int) -> Any:
    """A liquid cell for ``cfg`` (wrapped in mixed memory when asked)."""
    extra = dict(cfg.cell_options)
    cell: Any
    if cfg.kind == "cfc":
        from liquidcore.cells.cfc import CfCCell

        options = {
            "mode": cfg.mode,
            "backbone_units": cfg.backbone_units,
            "backbone_layers": cfg.backbone_layers,
            "backbone_activation": cfg.backbone_activation,
        }
        if cfg.backbone_dropout:
            options["backbone_dropout"] = cfg.backbone_dropout
        options.update(extra)
        cell = CfCCell(n_features, cfg.units, **_accepted(CfCCell, options, "CfCCell"))
    elif cfg.kind == "wired_cfc":
        from liquidcore.cells.cfc import WiredCfCCell

        options = {"mode": cfg.mode, **extra}
        wiring = build_wiring(cfg, n_outputs)
        cell = WiredCfCCell(n_features, wiring, **_accepted(WiredCfCCell, options, "WiredCfCCell"))
    elif cfg.kind == "ltc":
        from liquidcore.cells.ltc import LTCCell

        options = {"in_features": n_features, "ode_unfolds": cfg.ode_unfolds, **extra}
        wiring = build_wiring(cfg, n_outputs)
        cell = LTCCell(wiring, **_accepted(LTCCell, options, "LTCCell"))
    else:
        raise ValueError(f"{cfg.kind!r} is not a liquid cell kind")
    if cfg.mixed_memory:
        from liquidcore.cells.mixed import MixedMemoryCell

        cell = MixedMemoryCell(cell)
    return cell


def build_model(
    cfg: ModelConfig,
    spec: TaskSpec,
    *,
    input_mean: Sequence[float] | None = None,
    input_std: Sequence[float] | None = None,
    target_mean: Sequence[float] | None = None,
    target_std: Sequence[float] | None = None,
    name: str = "model",
    metadata: dict[str, Any] | None = None,
) -> LiquidModel:
    """A :class:`LiquidModel` for ``spec`` (a liquid or a baseline cell) with its head.

    ``target_mean``/``target_std`` (regression only) make the head de-normalise its outputs,
    so the network learns standardised targets and still answers in the targets' units.
    """
    if spec.task == "classification" and (target_mean is not None or target_std is not None):
        raise ValueError("target scaling applies to regression only")
    common: dict[str, Any] = {
        "input_mean": None if input_mean is None else [float(v) for v in input_mean],
        "input_std": None if input_std is None else [float(v) for v in input_std],
        "time_unit": spec.time_unit,
        "default_dt": spec.default_dt,
        "feature_names": list(spec.feature_names) if spec.feature_names else None,
        "output_names": list(spec.output_names) if spec.output_names else None,
        "name": name,
        "metadata": dict(metadata or {}),
    }
    scale = {
        "target_mean": None if target_mean is None else [float(v) for v in target_mean],
        "target_std": None if target_std is None else [float(v) for v in target_std],
    }
    if cfg.is_liquid:
        cell = build_cell(cfg, spec.n_features, spec.n_outputs)
        head = ReadoutHead(cell.output_size, spec.n_outputs, kind=spec.task, **scale)
    else:
        # The head is drawn before the cell here: the order in which the baselines' published
        # numbers (BENCHMARKS.md) drew their weights, so one seed still gives the same model.
        head = ReadoutHead(cfg.units, spec.n_outputs, kind=spec.task, **scale)
        cell = build_recurrent_cell(cfg, spec.n_features)
    return LiquidModel(cell, head, **common)
