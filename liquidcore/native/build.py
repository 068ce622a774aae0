"""Build and load liquidcore's native kernels on first use.

The kernels are one C file with no Python or torch headers, compiled by the machine's C
compiler in about a second and loaded with ctypes; a wheel then needs no per-platform binaries,
and a machine without a compiler still works (the torch path runs instead).

``LIQUIDCORE_NATIVE`` picks the behaviour:

* ``auto`` (default): build on first use; if that fails, warn once and use the torch path.
* ``off``: never build or use the native kernels.
* ``require``: build, and raise :class:`NativeBuildError` with the compiler's message if it
  fails (for deployments that must not silently run the slower path).

The library is cached in ``$LIQUIDCORE_NATIVE_CACHE`` (default
``$XDG_CACHE_HOME/liquidcore`` or ``~/.cache/liquidcore``) under a name keyed by a hash of the
sources and flags, written to a temporary file and renamed so that concurrent builds are safe.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import threading
import warnings
from pathlib import Path

import torch

MODES = ("auto", "off", "require")
SOURCE_DIR = Path(__file__).parent
SOURCES = ("ltc_loop.c", "ltc_loop.h")
_lock = threading.Lock()
_loaded: dict[str, ctypes.CDLL | None] = {}


class NativeBuildError(RuntimeError):
    """The native kernels could not be built or loaded (``LIQUIDCORE_NATIVE=require``)."""


def native_mode() -> str:
    """``LIQUIDCORE_NATIVE``, validated."""
    mode = os.environ.get("LIQUIDCORE_NATIVE", "auto").strip().lower() or "auto"
    if mode not in MODES:
        raise ValueError(f"LIQUIDCORE_NATIVE must be one of {', '.join(MODES)}; got {mode!r}")
    return mode


def cache_dir() -> Path:
    """Where built libraries are kept."""
    if explicit := os.environ.get("LIQUIDCORE_NATIVE_CACHE"):
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "liquidcore"


def compiler() -> list[str]:
    """The C compiler command: ``$CC``, Python's configured compiler, or ``cc``."""
    for candidate in (os.environ.get("CC"), sysconfig.get_config_var("CC"), "cc", "gcc"):
        if candidate:
            argv = shlex.split(candidate)
            if shutil.which(argv[0]):
                return argv
    raise NativeBuildError("no C compiler found (set CC, or install gcc)")


def compile_flags() -> list[str]:
    """Optimisation flags; AVX2/FMA only where torch found the CPU to support them."""
    flags = ["-O3", "-std=gnu11", "-fPIC", "-shared", "-fopenmp", "-Wno-psabi"]
    if sys.platform == "darwin":
        flags = [f for f in flags if f != "-fopenmp"] + ["-Xpreprocessor", "-fopenmp"]
    if torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512"):
        flags += ["-mavx2", "-mfma"]
    return flags


def _library_path(flags: list[str]) -> Path:
    # Keyed by sources and flags, not by the compiler: an image built with gcc finds its library
    # at run time without one.
    digest = hashlib.sha256()
    for name in SOURCES:
        digest.update((SOURCE_DIR / name).read_bytes())
    digest.update(" ".join(flags).encode())
    return cache_dir() / f"liquidcore_native-{digest.hexdigest()[:16]}.so"


def build() -> Path:
    """Compile the kernels (or find them cached); the path of the shared library."""
    flags = compile_flags()
    target = _library_path(flags)
    if target.exists():
        return target
    cc = compiler()
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        argv = [*cc, *flags, "-o", tmp, str(SOURCE_DIR / "ltc_loop.c"), "-lm"]
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            detail = proc.stderr.strip() or f"exit status {proc.returncode}"
            raise NativeBuildError(
                f"building the native kernels failed ({shlex.join(argv)}): {detail}"
            )
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def library() -> ctypes.CDLL | None:
    """The loaded kernels, or ``None`` when they are off or (in ``auto`` mode) unavailable."""
    mode = native_mode()
    if mode == "off":
        return None
    with _lock:
        if mode in _loaded:
            return _loaded[mode]
        try:
            # torch first: its bundled libgomp then serves the kernels' OpenMP as well.
            lib: ctypes.CDLL | None = ctypes.CDLL(str(build()))
        except (NativeBuildError, OSError) as err:
            if mode == "require":
                raise NativeBuildError(str(err)) from err
            warnings.warn(
                f"liquidcore: native LTC kernels unavailable, using the torch path ({err})",
                RuntimeWarning,
                stacklevel=2,
            )
            lib = None
        _loaded[mode] = lib
        return lib


def reset() -> None:
    """Forget loaded libraries (tests switch modes and caches)."""
    with _lock:
        _loaded.clear()
