"""What the campaign runs against: one :class:`RedisProcess` and service replicas (real
``liquid serve`` processes on free ports, started by ``tests.service_process``) sharing it."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tests.chaos.redis_process import RedisProcess
from tests.service_process import ServiceProcess, start_service


@dataclass
class Cluster:
    workdir: Path
    redis: RedisProcess
    service_args: list[str]
    replicas: list[ServiceProcess] = field(default_factory=list)

    @classmethod
    def start(
        cls,
        workdir: Path,
        *,
        replicas: int = 2,
        fsync: str = "everysec",
        service_args: Sequence[str] = (),
    ) -> Cluster:
        """Redis, then ``replicas`` services at once (each takes seconds to import torch)."""
        server = RedisProcess(workdir / "redis", fsync=fsync)
        server.start()
        cluster = cls(workdir, server, ["--redis-url", server.url, *service_args])
        try:
            with ThreadPoolExecutor(replicas) as pool:
                cluster.replicas = list(
                    pool.map(lambda _: cluster._start_service(), range(replicas))
                )
        except BaseException:
            cluster.stop()
            raise
        return cluster

    @property
    def urls(self) -> list[str]:
        return [r.url for r in self.replicas]

    def _start_service(self, port: int | None = None) -> ServiceProcess:
        return start_service(self.service_args, self.workdir, port=port)

    def restart_replica(self, index: int) -> None:
        """Start replica ``index`` again on its port (after a kill)."""
        old = self.replicas[index]
        old.stop()
        self.replicas[index] = self._start_service(port=old.port)

    def stop(self) -> None:
        for replica in self.replicas:
            replica.stop()
        self.redis.stop()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
