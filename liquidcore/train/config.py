"""Typed training configuration: the model, the optimisation and the data windows.

Each part is a frozen dataclass validated at construction, with ``to_dict``/``from_dict`` for
the JSON (or YAML) config file and the run directory. An unknown key is an error that lists the
valid ones (a typo must not silently train with a default).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from liquidcore.data.sequences import LOSS_ON
from liquidcore.data.windows import SPLIT_BY

LIQUID_KINDS: tuple[str, ...] = ("cfc", "wired_cfc", "ltc")
BASELINE_KINDS: tuple[str, ...] = ("lstm", "gru", "gru_dt", "gru_d", "ode_rnn")
MODEL_KINDS: tuple[str, ...] = LIQUID_KINDS + BASELINE_KINDS
CFC_MODES: tuple[str, ...] = ("default", "no_gate", "pure")
WIRINGS: tuple[str, ...] = ("fc", "ncp", "random")
OPTIMIZERS: tuple[str, ...] = ("adam", "adamw", "rmsprop", "sgd")
TIMESTAMP_UNITS: tuple[str, ...] = ("s", "ms", "us", "ns")
SCHEDULES: tuple[str, ...] = ("exponential", "cosine", "constant")
MONITORS: tuple[str, ...] = ("loss", "mse", "mae", "accuracy", "f1")

_C = TypeVar("_C")


def _one_of(name: str, value: object, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ValueError(f"unknown {name} {value!r}; valid: {', '.join(valid)}")


def _positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    ok = value >= 0 if allow_zero else value > 0
    if not (math.isfinite(value) and ok):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}; got {value}")


def _from_dict(cls: type[_C], d: dict[str, Any], section: str) -> _C:
    if not isinstance(d, dict):
        raise ValueError(f"config section {section!r} must be a mapping; got {type(d).__name__}")
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(d) - names)
    if unknown:
        raise ValueError(
            f"unknown key(s) {unknown} in config section {section!r}; valid keys: "
            f"{', '.join(sorted(names))}"
        )
    return cls(**d)


@dataclass(frozen=True)
class ModelConfig:
    """Which network. Liquid kinds: ``cfc`` (dense CfC), ``wired_cfc`` (CfC on a wiring),
    ``ltc``; baselines: ``lstm``, ``gru``, ``gru_dt`` (Δt as an input), ``gru_d`` (exponential
    state decay), ``ode_rnn``. ``mixed_memory`` wraps a liquid cell with an LSTM memory."""

    kind: str = "cfc"
    units: int = 64
    mode: str = "default"
    backbone_units: int = 128
    backbone_layers: int = 1
    backbone_activation: str = "lecun_tanh"
    backbone_dropout: float = 0.0
    wiring: str = "ncp"
    motor_neurons: int | None = None
    sparsity: float = 0.5
    wiring_seed: int = 22222
    mixed_memory: bool = False
    ode_unfolds: int = 6
    ode_steps: int = 2
    cell_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _one_of("model kind", self.kind, MODEL_KINDS)
        _one_of("CfC mode", self.mode, CFC_MODES)
        _one_of("wiring", self.wiring, WIRINGS)
        for name in ("units", "backbone_units", "backbone_layers", "ode_unfolds", "ode_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1; got {value!r}")
        if not 0.0 <= self.backbone_dropout < 1.0:
            raise ValueError(f"backbone_dropout must be in [0, 1); got {self.backbone_dropout}")
        if not 0.0 <= self.sparsity < 1.0:
            raise ValueError(f"sparsity must be in [0, 1); got {self.sparsity}")
        if self.motor_neurons is not None and self.motor_neurons < 1:
            raise ValueError(f"motor_neurons must be >= 1; got {self.motor_neurons}")
        if self.mixed_memory and self.kind not in LIQUID_KINDS:
            raise ValueError(f"mixed_memory applies to liquid cells ({', '.join(LIQUID_KINDS)})")

    @property
    def is_liquid(self) -> bool:
        return self.kind in LIQUID_KINDS

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        return _from_dict(cls, d, "model")


@dataclass(frozen=True)
class OptimConfig:
    """How to train. ``decay`` is the learning-rate factor per epoch of the exponential
    schedule (applied smoothly per batch, as Keras ``ExponentialDecay``); the cosine schedule
    anneals to ``lr * min_lr_ratio`` over ``epochs``. ``clip_norm`` 0 and ``patience`` 0
    switch clipping and early stopping off."""

    epochs: int = 50
    batch_size: int = 64
    lr: float = 0.005
    optimizer: str = "adam"
    weight_decay: float = 0.0
    schedule: str = "exponential"
    decay: float = 0.95
    min_lr_ratio: float = 0.0
    clip_norm: float = 1.0
    patience: int = 10
    monitor: str = "loss"
    seed: int = 0
    device: str = "cpu"
    eval_batch_size: int = 512

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "eval_batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1; got {value!r}")
        if not isinstance(self.patience, int) or self.patience < 0:
            raise ValueError(f"patience must be an integer >= 0 (0: off); got {self.patience!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0; got {self.seed!r}")
        _positive("lr", self.lr)
        _positive("weight_decay", self.weight_decay, allow_zero=True)
        _positive("clip_norm", self.clip_norm, allow_zero=True)
        _one_of("optimizer", self.optimizer, OPTIMIZERS)
        _one_of("schedule", self.schedule, SCHEDULES)
        _one_of("monitor", self.monitor, MONITORS)
        if not 0.0 < self.decay <= 1.0:
            raise ValueError(f"decay must be in (0, 1]; got {self.decay}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio must be in [0, 1]; got {self.min_lr_ratio}")
        if not (self.device in ("cpu", "cuda", "auto") or self.device.startswith("cuda:")):
            raise ValueError(f"device must be cpu, cuda, cuda:N or auto; got {self.device!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> OptimConfig:
        return _from_dict(cls, d, "train")


@dataclass(frozen=True)
class DataConfig:
    """How a long-format table becomes training windows."""

    window: int = 32
    stride: int | None = None
    valid_fraction: float = 0.2
    split: str = "stream"
    loss_on: str = "all"
    horizon: int = 0
    pad_short: bool = False
    normalize_inputs: bool = True
    scale_targets: bool = True
    default_dt: float | None = None
    time_unit: float | None = None
    timestamps: str = "s"

    def __post_init__(self) -> None:
        _one_of("timestamps unit", self.timestamps, TIMESTAMP_UNITS)
        if not isinstance(self.window, int) or self.window < 1:
            raise ValueError(f"window must be an integer >= 1; got {self.window!r}")
        if self.stride is not None and (not isinstance(self.stride, int) or self.stride < 1):
            raise ValueError(f"stride must be an integer >= 1; got {self.stride!r}")
        if not 0.0 < self.valid_fraction < 1.0:
            raise ValueError(f"valid_fraction must be in (0, 1); got {self.valid_fraction}")
        _one_of("split", self.split, SPLIT_BY)
        _one_of("loss_on", self.loss_on, LOSS_ON)
        if not isinstance(self.horizon, int) or self.horizon < 0:
            raise ValueError(f"horizon must be an integer >= 0; got {self.horizon!r}")
        if self.default_dt is not None:
            _positive("default_dt", self.default_dt, allow_zero=True)
        if self.time_unit is not None:
            _positive("time_unit", self.time_unit)

    @property
    def effective_stride(self) -> int:
        return self.stride if self.stride is not None else max(1, self.window // 2)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DataConfig:
        return _from_dict(cls, d, "data")


SECTIONS = ("model", "train", "data")


def load_config_file(path: str | Path) -> dict[str, dict[str, Any]]:
    """Read a JSON or YAML file with optional ``model``, ``train`` and ``data`` sections."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"config file {str(p)!r} does not exist")
    text = p.read_text()
    if p.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ValueError("a YAML config needs pyyaml (pip install pyyaml)") from exc
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValueError(f"config file {str(p)!r} is not valid YAML: {exc}") from exc
    else:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"config file {str(p)!r} is not valid JSON: {exc}") from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ValueError(f"config file {str(p)!r} must hold a mapping")
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise ValueError(
            f"unknown section(s) {unknown} in {str(p)!r}; valid: {', '.join(SECTIONS)}"
        )
    out: dict[str, dict[str, Any]] = {}
    for s in SECTIONS:
        section = raw.get(s) or {}
        if not isinstance(section, dict):
            raise ValueError(f"section {s!r} of {str(p)!r} must be a mapping")
        out[s] = dict(section)
    return out
