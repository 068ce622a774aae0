"""The models an engine serves: what it needs of a model (:class:`ServableModel`) and the
served set by name, each with the stream policy the engine's config gives it.

``ServableModel.version`` is typed ``str | None`` (as ``LiquidModel`` has it); the engine refuses
a model without one, since stored states are tied to the version that wrote them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from service.engine.config import EngineConfig
from service.engine.errors import UnknownModel
from service.stream_semantics import Policy


@runtime_checkable
class ServableModel(Protocol):
    """What the engine needs of a model (``liquidcore.LiquidModel`` is one). Δt in seconds."""

    @property
    def name(self) -> str: ...
    @property
    def version(self) -> str | None: ...  # content hash; the engine refuses a model without
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


def stream_policy(name: str, model: ServableModel, config: EngineConfig) -> Policy:
    """The stream rules (``service.stream_semantics``) for ``model`` served as ``name``."""
    first_dt = config.first_event_dt_s if config.first_event_dt_s is not None else model.default_dt
    return Policy(
        model=name,
        version=str(model.version),
        first_dt=float(first_dt),
        max_gap_s=config.max_gap_s,
        ttl_s=config.state_ttl_s,
        dedupe_window=config.dedupe_window,
    )


class ServedModels:
    """The served models by name, each with its :class:`Policy`; every one has a version."""

    def __init__(self, models: Mapping[str, ServableModel], config: EngineConfig) -> None:
        if not models:
            raise ValueError("an engine needs at least one model to serve")
        for name, m in models.items():
            if not m.version:
                raise ValueError(
                    f"model {name!r} has no version (content hash); load it with "
                    "liquidcore.checkpoint.load or set its version"
                )
        self.models: Mapping[str, ServableModel] = dict(models)
        self._policies = {name: stream_policy(name, m, config) for name, m in models.items()}

    def get(self, name: str) -> ServableModel:
        """The model served as ``name``; :class:`UnknownModel` if there is none."""
        try:
            return self.models[name]
        except KeyError:
            raise UnknownModel(f"unknown model {name!r}; served: {sorted(self.models)}") from None

    def policy(self, name: str) -> Policy:
        return self._policies[name]

    def version(self, name: str) -> str:
        return self._policies[name].version
