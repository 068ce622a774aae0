"""The campaign's redis-server: the harness's :class:`tests.redis_process.RedisProcess` with the
append-only file on and a log file, killed and restarted on the same port and directory, so
whatever it had persisted is loaded again."""

from __future__ import annotations

from pathlib import Path

from tests.redis_process import RedisProcess as HarnessRedis

FSYNC_MODES = ("always", "everysec", "no")


class RedisProcess(HarnessRedis):
    def __init__(self, workdir: Path, fsync: str = "everysec") -> None:
        if fsync not in FSYNC_MODES:
            raise ValueError(f"fsync must be one of {FSYNC_MODES}; got {fsync!r}")
        super().__init__(workdir)
        self.fsync = fsync

    @property
    def log(self) -> Path:
        return self.workdir / "redis.log"

    def start(self) -> None:
        """Start (or restart after a kill) with the current fsync mode; wait until loaded."""
        self.options = ["--appendonly", "yes", "--appendfsync", self.fsync]
        self.options += ["--logfile", str(self.log)]
        super().start()

    def set_fsync(self, mode: str) -> None:
        """``appendfsync`` of the running server (and of its restarts)."""
        if mode not in FSYNC_MODES:
            raise ValueError(f"fsync must be one of {FSYNC_MODES}; got {mode!r}")
        with self.client() as client:
            client.config_set("appendfsync", mode)
        self.fsync = mode
