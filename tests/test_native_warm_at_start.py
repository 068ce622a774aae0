"""``liquid serve`` builds or loads the native LTC kernels while it starts (the engine's
``DeviceExecutor.place`` calls ``liquidcore.native.warm``), so /readyz says ready only once they
are there and no request pays for a compile."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from liquidcore.native import NativeSettings, probe
from tests.service_process import start_service

pytestmark = pytest.mark.integration


def test_kernels_are_built_before_readyz_says_ready(tmp_path: Path) -> None:
    cache = tmp_path / "native-cache"
    # A compiler that is named but does not work (CC=/bin/false) must skip too: try a real
    # build, into a scratch cache, so the service's own cache starts empty.
    scratch = replace(NativeSettings.from_env(), mode="auto", cache_dir=tmp_path / "probe-cache")
    if probe(scratch).backend != "native":
        pytest.skip("no working C compiler here: nothing to build at start-up")
    env = {"LIQUIDCORE_NATIVE": "require", "LIQUIDCORE_NATIVE_CACHE": str(cache)}
    service = start_service([], tmp_path, env=env)  # returns once /readyz answers 200
    try:
        built = sorted(p.name for p in cache.glob("liquidcore_native-*"))
        assert built, "ready before the native kernels were built"
        assert httpx.get(f"{service.url}/readyz", timeout=5.0).status_code == 200
    finally:
        service.stop()
