"""The served-model registry: the models one service process answers with.

Models come from artifact directories (``liquidcore.checkpoint``) named in the settings; their
names come from the artifacts and the first is the default. With none given, the demo model
shipped in the package (``service/demo_model/``) is served, so ``liquid serve`` works out of the
box.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from service.engine import UnknownModel
from service.schemas import FeatureSpec
from service.settings import DEMO_MODEL_DIR

MODEL_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class ServedModel:
    """A loaded model with what the API needs to know about it."""

    name: str
    model: Any  # liquidcore.model.LiquidModel
    features: FeatureSpec
    output_names: tuple[str, ...] | None
    source: str

    @property
    def version(self) -> str:
        return str(self.model.version)


def _served(model: Any, source: str) -> ServedModel:
    name = str(getattr(model, "name", "") or "")
    if not MODEL_NAME_PATTERN.match(name):
        raise ValueError(
            f"model {source} has name {name!r}; a served model needs a name of 1-64 letters, "
            "digits, '.', '_' or '-' (set it when saving the artifact)"
        )
    if not getattr(model, "version", None):
        raise ValueError(f"model {source} has no version; load it with liquidcore.checkpoint")
    names = getattr(model, "output_names", None)
    return ServedModel(
        name=name,
        model=model,
        features=FeatureSpec.of(model),
        output_names=tuple(names) if names else None,
        source=source,
    )


class ModelRegistry:
    """The served models by name, the default one, and what the API shows of them."""

    def __init__(self, models: Sequence[Any], sources: Sequence[str] | None = None) -> None:
        if not models:
            raise ValueError("a model registry needs at least one model")
        sources = list(sources) if sources is not None else [f"#{i}" for i in range(len(models))]
        served = [_served(m, s) for m, s in zip(models, sources, strict=True)]
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

    def as_mapping(self) -> Mapping[str, Any]:
        """``name -> model``, what the engine takes."""
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

    def all(self) -> list[ServedModel]:
        return list(self._served.values())

    def with_input_limit(self, max_abs: float) -> ModelRegistry:
        """The same models, refusing feature values beyond ``max_abs`` in magnitude."""
        limited = copy.copy(self)
        limited._served = {
            name: replace(e, features=replace(e.features, max_abs=max_abs))
            for name, e in self._served.items()
        }
        limited._default = limited._served[self._default.name]
        return limited
