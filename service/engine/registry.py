"""The served models: what the engine needs of a model (:class:`ServableModel`), what the API
shows of one (:class:`ServedModel`: its features, output names, source and stream policy) and
the one registry of them by name (:class:`ModelRegistry`).

Models come from artifact directories (``liquidcore.checkpoint``) named in the settings; their
names come from the artifacts and the first is the default. With none given, the demo model
shipped in the package (``service/demo_model/``) is served, so ``liquid serve`` works out of the
box. The engine takes the registry, or a ``{name: model}`` mapping (tests, embedding).

``ServableModel.version`` is typed ``str | None`` (as ``LiquidModel`` has it); the registry
refuses a model without one, since stored states are tied to the version that wrote them.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from service.engine.config import EngineConfig
from service.engine.errors import UnknownModel
from service.engine.semantics import Policy
from service.settings import DEMO_MODEL_DIR

MODEL_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# Features and states are float32 in the model: a finite float64 beyond this would become inf.
FLOAT32_MAX = 3.4028234663852886e38


@runtime_checkable
class ServableModel(Protocol):
    """What the engine needs of a model (``liquidcore.LiquidModel`` is one). Δt in seconds."""

    @property
    def name(self) -> str: ...
    @property
    def version(self) -> str | None: ...  # content hash; the registry refuses a model without
    @property
    def input_size(self) -> int: ...
    @property
    def output_size(self) -> int: ...
    @property
    def state_size(self) -> int: ...
    @property
    def feature_names(self) -> list[str] | None: ...
    @property
    def output_names(self) -> list[str] | None: ...
    @property
    def time_unit(self) -> float: ...
    @property
    def default_dt(self) -> float: ...

    def init_state(self, n: int, device: torch.device | str | None = None) -> Tensor: ...

    def step(self, x: Tensor, dt: Tensor, h: Tensor) -> tuple[Tensor, Tensor]: ...

    def forward(
        self,
        x: Tensor,
        dt: Tensor,
        h0: Tensor | None = None,
        mask: Tensor | None = None,
        reset: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]: ...

    def advance(self, h: Tensor, dt: Tensor, x_hold: Tensor) -> Tensor: ...

    def present(self, y: Tensor) -> Tensor: ...


@dataclass(frozen=True)
class FeatureSpec:
    """What a model takes as ``x``: its size, the feature names when it names them, and the
    largest magnitude a feature may have (``max_abs``; beyond it: ``value_out_of_range``)."""

    size: int
    names: tuple[str, ...] | None = None
    max_abs: float = FLOAT32_MAX

    @classmethod
    def of(cls, model: Any, max_abs: float = FLOAT32_MAX) -> FeatureSpec:
        names = getattr(model, "feature_names", None)
        return cls(int(model.input_size), tuple(names) if names else None, max_abs)


def stream_policy(name: str, model: ServableModel, config: EngineConfig) -> Policy:
    """The stream rules (``service.engine.semantics``) for ``model`` served as ``name``."""
    first_dt = config.first_event_dt_s if config.first_event_dt_s is not None else model.default_dt
    return Policy(
        model=name,
        version=str(model.version),
        first_dt=float(first_dt),
        max_gap_s=config.max_gap_s,
        ttl_s=config.state_ttl_s,
        dedupe_window=config.dedupe_window,
    )


@dataclass(frozen=True)
class ServedModel:
    """A served model with what the API and the engine need to know about it. ``policy`` is set
    once the registry is configured for an engine (:meth:`ModelRegistry.configured`)."""

    name: str
    model: Any  # a ServableModel, e.g. liquidcore.model.LiquidModel
    features: FeatureSpec
    output_names: tuple[str, ...] | None
    source: str
    policy: Policy | None = None

    @property
    def version(self) -> str:
        return str(self.model.version)


def _served(name: str, model: Any, source: str) -> ServedModel:
    if not MODEL_NAME_PATTERN.match(name):
        raise ValueError(
            f"model {source} has name {name!r}; a served model needs a name of 1-64 letters, "
            "digits, '.', '_' or '-' (set it when saving the artifact)"
        )
    if not getattr(model, "version", None):
        raise ValueError(
            f"model {name!r} ({source}) has no version (content hash); load it with "
            "liquidcore.checkpoint or set its version"
        )
    names = getattr(model, "output_names", None)
    return ServedModel(
        name=name,
        model=model,
        features=FeatureSpec.of(model),
        output_names=tuple(names) if names else None,
        source=source,
    )


class ModelRegistry:
    """The served models by name, the default one (the first), and their stream policies.

    ``models``: a sequence of models (each named by its ``name``) or a ``{name: model}``
    mapping; ``sources`` says where each came from (shown in errors)."""

    def __init__(
        self,
        models: Sequence[Any] | Mapping[str, Any],
        sources: Sequence[str] | None = None,
    ) -> None:
        if not models:
            raise ValueError("a model registry needs at least one model")
        if isinstance(models, Mapping):
            named = list(models.items())
        else:
            named = [(str(getattr(m, "name", "") or ""), m) for m in models]
        sources = list(sources) if sources is not None else [f"#{i}" for i in range(len(named))]
        served = [_served(n, m, s) for (n, m), s in zip(named, sources, strict=True)]
        self._served: dict[str, ServedModel] = {}
        for entry in served:
            if entry.name in self._served:
                raise ValueError(
                    f"two served models are named {entry.name!r} ({self._served[entry.name].source}"
                    f" and {entry.source}); model names must be unique"
                )
            self._served[entry.name] = entry
        self._default = served[0]

    @classmethod
    def load(cls, paths: Sequence[Path | str], device: str = "cpu") -> ModelRegistry:
        """Load artifact directories (the demo model when ``paths`` is empty)."""
        from liquidcore.checkpoint import load_model

        if not paths:
            if not (DEMO_MODEL_DIR / "config.json").is_file():
                raise ValueError(
                    f"no model given and the demo model is missing at {DEMO_MODEL_DIR}; "
                    "pass --model PATH (or LIQUID_MODELS) with a model artifact directory"
                )
            paths = [DEMO_MODEL_DIR]
        models = []
        for path in paths:
            if not Path(path).is_dir():
                raise ValueError(f"model artifact {path} is not a directory")
            models.append(load_model(path, device=device))
        return cls(models, [str(p) for p in paths])

    def configured(self, config: EngineConfig) -> ModelRegistry:
        """The same models under ``config``: each with its stream policy, refusing feature
        values beyond ``config.max_abs_input`` in magnitude."""
        out = copy.copy(self)
        out._served = {
            name: replace(
                e,
                features=replace(e.features, max_abs=config.max_abs_input),
                policy=stream_policy(name, e.model, config),
            )
            for name, e in self._served.items()
        }
        out._default = out._served[self._default.name]
        return out

    def as_mapping(self) -> Mapping[str, Any]:
        """``name -> model``."""
        return {name: entry.model for name, entry in self._served.items()}

    def __contains__(self, name: object) -> bool:
        return name in self._served

    def __len__(self) -> int:
        return len(self._served)

    @property
    def default(self) -> ServedModel:
        return self._default

    def get(self, name: str | None = None) -> ServedModel:
        """The served model called ``name`` (the default model for ``None``)."""
        if name is None:
            return self._default
        try:
            return self._served[name]
        except KeyError:
            raise UnknownModel(
                f"unknown model {name!r}; served models: {', '.join(self._served)}"
            ) from None

    def model(self, name: str) -> ServableModel:
        """The model served as ``name``; :class:`UnknownModel` if there is none."""
        return self.get(name).model

    def policy(self, name: str) -> Policy:
        """The stream policy of ``name`` (a configured registry only)."""
        policy = self.get(name).policy
        if policy is None:
            raise RuntimeError("the registry is not configured; use ModelRegistry.configured")
        return policy

    def version(self, name: str) -> str:
        return self.get(name).version

    def all(self) -> list[ServedModel]:
        return list(self._served.values())
