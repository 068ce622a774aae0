"""A redis-server the campaign can kill and restart: append-only file on, same port and directory
across restarts, so whatever it had persisted is loaded again."""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from tests.conftest import free_port, redis_command, wait_for_port

FSYNC_MODES = ("always", "everysec", "no")
START_TIMEOUT_S = 30.0


@dataclass
class RedisProcess:
    workdir: Path
    fsync: str = "everysec"
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        if self.fsync not in FSYNC_MODES:
            raise ValueError(f"fsync must be one of {FSYNC_MODES}; got {self.fsync!r}")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log(self) -> Path:
        return self.workdir / "redis.log"

    def start(self) -> None:
        """Start (or restart after a kill) and wait until the data set is loaded."""
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed (make install-system)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        argv = redis_command(exe, self.port, self.workdir, "--appendonly", "yes")
        argv += ["--appendfsync", self.fsync, "--logfile", str(self.log)]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, timeout=START_TIMEOUT_S)
        deadline = time.monotonic() + START_TIMEOUT_S
        with self.client() as client:
            while True:  # the port opens before the append-only file is loaded (LOADING)
                try:
                    client.ping()
                    return
                except redis.exceptions.BusyLoadingError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=5.0)

    def set_fsync(self, mode: str) -> None:
        """``appendfsync`` of the running server (and of its restarts)."""
        if mode not in FSYNC_MODES:
            raise ValueError(f"fsync must be one of {FSYNC_MODES}; got {mode!r}")
        with self.client() as client:
            client.config_set("appendfsync", mode)
        self.fsync = mode

    def send_signal(self, sig: int) -> None:
        if self.proc is not None:
            self.proc.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL: no chance to flush anything."""
        self.send_signal(signal.SIGKILL)
        self._reap()

    def shutdown_nosave(self) -> None:
        """``SHUTDOWN NOSAVE``: no RDB snapshot; the append-only file is flushed on the way out."""
        with self.client() as client:
            client.shutdown(nosave=True)
        self._reap()

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            self._reap()
            return
        self.send_signal(signal.SIGCONT)  # a paused server cannot act on SIGTERM
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()

    def _reap(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
