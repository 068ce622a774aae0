"""Whether this machine can run the native LTC kernels (a working C compiler, or a library
already in the cache): tests that compare them with the PyTorch path skip where it cannot, so
the suite passes with ``CC=/bin/false`` and an empty ``LIQUIDCORE_NATIVE_CACHE``."""

from __future__ import annotations

import dataclasses
import functools

import pytest


@functools.cache
def native_kernels_available() -> bool:
    from liquidcore.native import NativeSettings, probe

    settings = dataclasses.replace(NativeSettings.from_env(), mode="auto")
    return probe(settings).backend == "native"


def skip_without_native_kernels() -> None:
    if not native_kernels_available():
        pytest.skip("no native LTC kernels here (no working C compiler and none cached)")
