"""The native kernels' configuration: one typed value, read from the environment once.

=============================  ===========================================================
``LIQUIDCORE_NATIVE``          ``auto`` (default): build or load the kernels, and use the
                               PyTorch path (one log line) if that fails; ``off``: never
                               build or use them; ``require``: fail with the compiler's
                               message instead of falling back
``LIQUIDCORE_NATIVE_CACHE``    where built libraries are kept (default
                               ``$XDG_CACHE_HOME/liquidcore``, else ``~/.cache/liquidcore``);
                               an empty directory forces a fresh build
``CC``                         the C compiler (default: Python's configured one, ``cc``,
                               ``gcc``); ``CC=/bin/false`` simulates a machine without one
=============================  ===========================================================

:func:`native_settings` reads them on first use (never at import); :func:`configure` sets them
explicitly instead (an application's own config, or tests).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, cast

NativeMode = Literal["auto", "off", "require"]
MODES: tuple[NativeMode, ...] = ("auto", "off", "require")


def default_cache_dir(environ: Mapping[str, str] = os.environ) -> Path:
    base = environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "liquidcore"


@dataclass(frozen=True)
class NativeSettings:
    """How the native kernels are built and used; ``ValueError`` on an unknown mode."""

    mode: NativeMode = "auto"
    cache_dir: Path = field(default_factory=default_cache_dir)
    compiler: str | None = None  # a command line; None: look for one (see build.compiler)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(
                f"LIQUIDCORE_NATIVE must be one of {', '.join(MODES)}; got {self.mode!r}"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> NativeSettings:
        mode = environ.get("LIQUIDCORE_NATIVE", "auto").strip().lower() or "auto"
        cache = environ.get("LIQUIDCORE_NATIVE_CACHE")
        return cls(
            mode=cast(NativeMode, mode),
            cache_dir=Path(cache) if cache else default_cache_dir(environ),
            compiler=environ.get("CC") or None,
        )


_lock = threading.Lock()
_current: NativeSettings | None = None


def native_settings() -> NativeSettings:
    """The settings in force: those :func:`configure` set, else the environment's, read once."""
    global _current
    with _lock:
        if _current is None:
            _current = NativeSettings.from_env()
        return _current


def configure(settings: NativeSettings | None) -> None:
    """Use ``settings`` from now on (``None``: read the environment again on next use). Takes
    effect for kernels not loaded yet; :func:`liquidcore.native.reset` also forgets those."""
    global _current
    with _lock:
        _current = settings
