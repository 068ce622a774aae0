"""Which LTC kernels run: the native library, loaded once per process, or the PyTorch path.

The first call of :func:`library` (or :func:`warm`, which ``liquid serve`` calls before it
reports ready, and ``python -m liquidcore.native`` at install) builds or loads the kernels as
the settings say and remembers the outcome for the process. In ``auto`` mode a failure is one
WARNING on the ``liquidcore.native`` logger and the PyTorch path from then on, never a Python
warning or an error; ``require`` raises :class:`NativeBuildError` instead. :func:`status` says
which path is active and why.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from liquidcore.native.build import NativeBuildError, build
from liquidcore.native.settings import NativeMode, NativeSettings, configure, native_settings

Backend = Literal["native", "torch"]
logger = logging.getLogger("liquidcore.native")


@dataclass(frozen=True)
class NativeStatus:
    """The LTC kernels in use on CPU float32/float64 tensors (CUDA, other dtypes and tracing
    always take the PyTorch path)."""

    backend: Backend
    mode: NativeMode
    library: Path | None  # the loaded shared library (backend "native")
    reason: str  # why the PyTorch path runs; "" for the native one


@dataclass(frozen=True)
class _Loaded:
    status: NativeStatus
    lib: ctypes.CDLL | None


_lock = threading.Lock()
_loaded: _Loaded | None = None


def _load(settings: NativeSettings) -> _Loaded:
    """Build or load the kernels as ``settings`` say; raises only in ``require`` mode."""
    if settings.mode == "off":
        return _Loaded(NativeStatus("torch", "off", None, "LIQUIDCORE_NATIVE=off"), None)
    try:
        path = build(settings)
        # torch is imported first (build imports it): its OpenMP runtime serves the kernels.
        lib = ctypes.CDLL(str(path))
    except (NativeBuildError, OSError) as err:
        if settings.mode == "require":
            raise NativeBuildError(str(err)) from err
        return _Loaded(NativeStatus("torch", settings.mode, None, str(err)), None)
    return _Loaded(NativeStatus("native", settings.mode, path, ""), lib)


def probe(settings: NativeSettings) -> NativeStatus:
    """What ``settings`` would give, without changing the process's kernels or logging."""
    return _load(settings).status


def _resolve() -> _Loaded:
    global _loaded
    loaded = _loaded
    if loaded is not None:
        return loaded
    with _lock:
        if _loaded is None:
            _loaded = _load(native_settings())
            status = _loaded.status
            if status.backend == "native":
                logger.info("native LTC kernels loaded from %s", status.library)
            elif status.mode == "off":
                logger.info("native LTC kernels off (LIQUIDCORE_NATIVE=off); using PyTorch")
            else:
                logger.warning(
                    "native LTC kernels unavailable, using the PyTorch path: %s", status.reason
                )
        return _loaded


def library() -> ctypes.CDLL | None:
    """The loaded kernels, or ``None`` when the PyTorch path is active."""
    return _resolve().lib


def status() -> NativeStatus:
    """Which path is active, building or loading the kernels first if that was not done yet."""
    return _resolve().status


def warm() -> NativeStatus:
    """Build or load the kernels now (start-up), so no request pays for it; idempotent."""
    return status()


def active_backend() -> Backend:
    """``"native"`` or ``"torch"``: the LTC kernels in use on CPU."""
    return status().backend


def reset() -> None:
    """Forget the loaded kernels and the settings: the next use reads the environment again
    (tests switch modes and caches)."""
    global _loaded
    with _lock:
        _loaded = None
        configure(None)
