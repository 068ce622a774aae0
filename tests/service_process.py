"""Real service processes for tests: ``python -m service serve`` in its own process group, with
an environment free of the developer's ``LIQUID_*`` settings, waited for until /readyz answers."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 90.0


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without LIQUID_* settings, importing this checkout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIQUID_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env["PYTHONPATH"] = str(REPO)
    env.update(extra or {})
    return env


@dataclass
class ServiceProcess:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    api_key: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def kill(self, sig: int = signal.SIGKILL) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if self.proc.poll() is None:
                self.kill(sig)


def start_service(
    args: Sequence[str],
    tmp: Path,
    *,
    port: int | None = None,
    env: dict[str, str] | None = None,
    api_key: str | None = None,
) -> ServiceProcess:
    """Start ``liquid serve ARGS`` (1 ms batch delay, warnings only) and wait until it is ready;
    ``api_key`` adds ``--api-keys KEY:tenant-a``."""
    port = port or free_port()
    log = tmp / f"service-{port}-{time.monotonic_ns()}.log"
    keys = ["--api-keys", f"{api_key}:tenant-a"] if api_key else []
    argv = [sys.executable, "-m", "service", "serve", "--port", str(port)]
    # one worker unless a test asks for more (the default grows with the machine's cores)
    argv += ["--log-level", "warning", "--max-delay-ms", "1", "--workers", "1", *keys, *args]
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            argv,
            cwd=REPO,
            env=clean_env(env),
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    service = ServiceProcess(proc, port, log, api_key)
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
