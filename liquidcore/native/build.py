"""Compile liquidcore's native kernels into a cached shared library.

The kernels are one C file with no Python or torch headers, compiled by the machine's C compiler
in about a second and loaded with ctypes (:mod:`liquidcore.native.runtime`); a wheel then needs
no per-platform binaries, and a machine without a compiler still works (the PyTorch path runs).

The library is kept in the settings' ``cache_dir`` under a name keyed by a hash of the sources
and flags (not the compiler: an image built with gcc finds its library at run time without
one), written to a temporary file and renamed, so that concurrent builds are safe.

OpenMP. Linux gcc and clang build with ``-fopenmp``; the library then shares torch's OpenMP
runtime (torch is loaded first). Apple clang has no ``-fopenmp``: on macOS the build asks for
``-Xpreprocessor -fopenmp -lomp`` (Homebrew's ``libomp``), and where that fails, as wherever the
OpenMP build fails, it builds the same kernels single-threaded (equal results; the kernels
split streams over threads by whole tiles).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import torch

from liquidcore.native.settings import NativeSettings, native_settings

SOURCE_DIR = Path(__file__).parent
SOURCES = ("ltc_loop.c", "ltc_loop.h", "ltc_step.h")
BASE_FLAGS = ("-O3", "-std=gnu11", "-fPIC", "-shared", "-Wno-psabi")
logger = logging.getLogger(__name__)


class NativeBuildError(RuntimeError):
    """The native kernels could not be built or loaded."""


def compiler(settings: NativeSettings | None = None) -> list[str]:
    """The C compiler command: the settings' (``$CC``), Python's configured one, ``cc``, or
    ``gcc``, whichever is found first."""
    explicit = (settings or native_settings()).compiler
    for candidate in (explicit, sysconfig.get_config_var("CC"), "cc", "gcc"):
        if candidate:
            argv = shlex.split(candidate)
            if shutil.which(argv[0]):
                return argv
    raise NativeBuildError("no C compiler found (set CC, or install gcc or clang)")


def openmp_flags() -> list[str]:
    if sys.platform == "darwin":
        return ["-Xpreprocessor", "-fopenmp", "-lomp"]
    return ["-fopenmp"]


def compile_flags(openmp: bool = True) -> list[str]:
    """Optimisation flags; AVX2/FMA only where torch found the CPU to support them."""
    flags = [*BASE_FLAGS, *(openmp_flags() if openmp else [])]
    if torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512"):
        flags += ["-mavx2", "-mfma"]
    return flags


def library_path(flags: list[str], cache_dir: Path) -> Path:
    digest = hashlib.sha256()
    for name in SOURCES:
        digest.update((SOURCE_DIR / name).read_bytes())
    digest.update(" ".join(flags).encode())
    return cache_dir / f"liquidcore_native-{digest.hexdigest()[:16]}.so"


def cached(settings: NativeSettings | None = None) -> Path | None:
    """An already built library for this machine's flags (OpenMP preferred), else ``None``."""
    cache_dir = (settings or native_settings()).cache_dir
    for openmp in (True, False):
        path = library_path(compile_flags(openmp), cache_dir)
        if path.exists():
            return path
    return None


def _compile(cc: list[str], flags: list[str], target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        argv = [*cc, *flags, "-o", tmp, str(SOURCE_DIR / "ltc_loop.c"), "-lm"]
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        except OSError as err:
            raise NativeBuildError(
                f"running the C compiler failed ({shlex.join(argv)}): {err}"
            ) from err
        if proc.returncode != 0:
            detail = proc.stderr.strip() or f"exit status {proc.returncode}"
            raise NativeBuildError(
                f"building the native kernels failed ({shlex.join(argv)}): {detail}"
            )
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def build(settings: NativeSettings | None = None) -> Path:
    """Compile the kernels (or find them cached); the path of the shared library.

    :class:`NativeBuildError` carries the compiler's message when neither the OpenMP nor the
    single-threaded build succeeds.
    """
    settings = settings or native_settings()
    if found := cached(settings):
        return found
    cc = compiler(settings)
    try:
        target = library_path(compile_flags(openmp=True), settings.cache_dir)
        _compile(cc, compile_flags(openmp=True), target)
    except NativeBuildError as with_openmp:
        target = library_path(compile_flags(openmp=False), settings.cache_dir)
        try:
            _compile(cc, compile_flags(openmp=False), target)
        except NativeBuildError:
            raise with_openmp from None
        logger.info("native kernels built without OpenMP (single-threaded): %s", with_openmp)
    return target
