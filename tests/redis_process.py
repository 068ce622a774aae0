"""A private redis-server that one test owns: started with its own options (a small
``maxmemory``), stopped and started again on the same port (Redis down, Redis back)."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port, redis_command, stop_process, wait_for_port


class RedisProcess:
    """redis-server on 127.0.0.1 with ``options`` appended to the harness defaults."""

    def __init__(self, workdir: Path, *options: str) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            pytest.fail("redis-server is not installed (make install-system)")
        self.exe = exe
        self.workdir = workdir
        self.options = options
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        argv = redis_command(self.exe, self.port, self.workdir, *self.options)
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port)

    def stop(self) -> None:
        if self.proc is None:
            return
        stop_process(self.proc)
        self.proc = None


@contextlib.contextmanager
def private_redis(workdir: Path, *options: str) -> Iterator[RedisProcess]:
    server = RedisProcess(workdir, *options)
    server.start()
    try:
        yield server
    finally:
        server.stop()
