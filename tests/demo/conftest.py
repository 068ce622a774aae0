"""Fixtures of the demo tests: a real ``liquid serve`` process with the shipped demo model (no
``--model``), with and without API keys."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[2]
API_KEY = "demo-test-key-0123"
START_TIMEOUT_S = 90.0


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without LIQUID_* settings, importing this checkout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIQUID_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env["PYTHONPATH"] = str(REPO)
    env.update(extra or {})
    return env


def has_sktime_data() -> bool:
    from service.demo.recordings import DataMissingError, data_dir

    try:
        data_dir()
    except DataMissingError:
        return False
    return True


@dataclass
class Service:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    api_key: str | None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def stop(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if self.proc.poll() is not None:
                return
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)


def start_service(tmp: Path, args: Sequence[str] = (), api_key: str | None = None) -> Service:
    """``python -m service serve`` (the demo model, the in-process store), ready at /readyz."""
    port = free_port()
    log = tmp / f"service-{port}.log"
    extra = ["--api-keys", f"{api_key}:tenant-a"] if api_key else []
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "service",
                "serve",
                "--port",
                str(port),
                "--log-level",
                "warning",
                "--max-delay-ms",
                "1",
                *extra,
                *args,
            ],
            cwd=REPO,
            env=clean_env(),
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    service = Service(proc, port, log, api_key)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the service exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{service.url}/readyz", timeout=1.0).status_code == 200:
                return service
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    service.stop()
    raise RuntimeError(f"the service is not ready after {START_TIMEOUT_S} s:\n{log.read_text()}")


@pytest.fixture(scope="module")
def demo_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The service as ``liquid serve`` runs it with no options: the demo model, no keys."""
    service = start_service(tmp_path_factory.mktemp("demo-service"))
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="module")
def keyed_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The same with an API key (tenant ``tenant-a``)."""
    service = start_service(tmp_path_factory.mktemp("keyed-service"), api_key=API_KEY)
    try:
        yield service
    finally:
        service.stop()
