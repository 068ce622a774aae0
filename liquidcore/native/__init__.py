"""Native (C, OpenMP) LTC kernels with the PyTorch implementation as fallback.

``status()`` / ``active_backend()`` say which path runs, ``warm()`` builds or loads the kernels
now (``python -m liquidcore.native`` does it at install), ``NativeSettings`` / ``configure()``
hold the configuration (see :mod:`liquidcore.native.settings`).
"""

from liquidcore.native.build import NativeBuildError
from liquidcore.native.runtime import (
    NativeStatus,
    active_backend,
    library,
    probe,
    reset,
    status,
    warm,
)
from liquidcore.native.settings import NativeSettings, configure, native_settings

__all__ = [
    "NativeBuildError",
    "NativeSettings",
    "NativeStatus",
    "active_backend",
    "configure",
    "library",
    "native_settings",
    "probe",
    "reset",
    "status",
    "warm",
]
