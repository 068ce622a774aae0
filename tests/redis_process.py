"""Private Redis servers that a test (or the chaos campaign) owns: a redis-server started with
its own options on a free port, stopped, killed, paused and started again on the same port and
directory (whatever it persisted is loaded again); and a real Redis Cluster of such servers
(:class:`RedisClusterProcesses`). The one harness for both (``tests.chaos.redis_process`` adds
the append-only file settings of the campaign)."""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import redis

from tests.conftest import free_port, free_ports, redis_command, stop_process, wait_for_port

START_TIMEOUT_S = 30.0


class RedisProcess:
    """redis-server on 127.0.0.1 with ``options`` appended to the harness defaults."""

    def __init__(self, workdir: Path, *options: str, port: int | None = None) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed (make install-system)")
        self.exe = exe
        self.workdir = workdir
        self.options = list(options)
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=5.0)

    def start(self) -> None:
        """Start (or restart after a kill) and wait until the data set is loaded."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        argv = redis_command(self.exe, self.port, self.workdir, *self.options)
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, timeout=START_TIMEOUT_S)
        deadline = time.monotonic() + START_TIMEOUT_S
        with self.client() as client:
            while True:  # the port opens before a persisted data set is loaded (LOADING)
                try:
                    client.ping()
                    return
                except redis.exceptions.BusyLoadingError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)

    def send_signal(self, sig: int) -> None:
        if self.proc is not None:
            self.proc.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL: no chance to flush or to hand anything over."""
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
        stop_process(self.proc, timeout=10)
        self.proc = None

    def _reap(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
        self.proc = None


@contextlib.contextmanager
def private_redis(workdir: Path, *options: str) -> Iterator[RedisProcess]:
    server = RedisProcess(workdir, *options)
    server.start()
    try:
        yield server
    finally:
        server.stop()


CLUSTER_NODE_TIMEOUT_MS = 1000
CLUSTER_READY_TIMEOUT_S = 30.0


class RedisClusterProcesses:
    """A real Redis Cluster on loopback: ``masters`` x (1 + ``replicas_per_master``)
    ``redis-server --cluster-enabled yes`` nodes on free ports, each in its own directory,
    joined by ``redis-cli --cluster create`` and waited for until every node reports
    ``cluster_state:ok``. ``cluster-node-timeout`` is short so that a killed master's replica is
    promoted within seconds."""

    def __init__(self, workdir: Path, *, masters: int = 3, replicas_per_master: int = 1) -> None:
        cli = shutil.which("redis-cli")
        if cli is None:
            raise RuntimeError("redis-cli is not installed (make install-system)")
        self.cli = cli
        self.replicas_per_master = replicas_per_master
        node_options = (
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            str(CLUSTER_NODE_TIMEOUT_MS),
        )
        count = masters * (1 + replicas_per_master)
        # Every node's port and bus port, all distinct (the bus port defaults to port + 10000,
        # which may be taken or past 65535).
        ports = free_ports(2 * count)
        self.nodes: list[RedisProcess] = []
        for i in range(count):
            node_dir = workdir / f"node{i}"
            node_dir.mkdir(parents=True, exist_ok=True)
            bus = ("--cluster-port", str(ports[2 * i + 1]))
            self.nodes.append(RedisProcess(node_dir, *node_options, *bus, port=ports[2 * i]))

    @property
    def url(self) -> str:
        """The service's URL: every node is a seed."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        subprocess.run(
            [
                self.cli,
                "--cluster",
                "create",
                *(f"127.0.0.1:{n.port}" for n in self.nodes),
                "--cluster-replicas",
                str(self.replicas_per_master),
                "--cluster-yes",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
        )
        self.wait_ok()

    def running(self) -> list[RedisProcess]:
        return [n for n in self.nodes if n.proc is not None and n.proc.poll() is None]

    def info(self, node: RedisProcess) -> dict[str, str]:
        with node.client() as client:
            raw = client.execute_command("CLUSTER", "INFO")
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        return dict(line.split(":", 1) for line in text.split() if ":" in line)

    def role(self, node: RedisProcess) -> str:
        with node.client() as client:
            return str(client.info("replication")["role"])

    def masters(self) -> list[RedisProcess]:
        return [n for n in self.running() if self.role(n) == "master"]

    def replication_up(self, node: RedisProcess) -> bool:
        """A master, or a replica whose link to its master is up (synced)."""
        with node.client() as client:
            info = client.info("replication")
        return info["role"] == "master" or info.get("master_link_status") == "up"

    def wait_ok(self, timeout: float = CLUSTER_READY_TIMEOUT_S) -> None:
        """Until every running node says ``cluster_state:ok`` with all 16384 slots ok, and
        every running replica is synced with its master."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                nodes = self.running()
                infos = [self.info(n) for n in nodes]
                if all(
                    i.get("cluster_state") == "ok" and i.get("cluster_slots_ok") == "16384"
                    for i in infos
                ) and all(self.replication_up(n) for n in nodes):
                    return
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the cluster is not ok after {timeout} s")
            time.sleep(0.1)

    def slots_of(self, master: RedisProcess) -> list[int]:
        """The slots ``master`` serves, in order."""
        with master.client() as client:
            ranges = client.execute_command("CLUSTER", "SLOTS")
        out: list[int] = []
        for r in ranges:
            if int(r[2][1]) == master.port:
                out += range(int(r[0]), int(r[1]) + 1)
        return sorted(out)

    def reshard(self, source: RedisProcess, target: RedisProcess, slots: int) -> None:
        """Move ``slots`` slots (with their keys) from ``source`` to ``target`` master."""
        ids = {}
        for node in (source, target):
            with node.client() as client:
                ids[node.port] = client.execute_command("CLUSTER", "MYID").decode()
        subprocess.run(
            [
                self.cli,
                "--cluster",
                "reshard",
                f"127.0.0.1:{target.port}",
                "--cluster-from",
                ids[source.port],
                "--cluster-to",
                ids[target.port],
                "--cluster-slots",
                str(slots),
                "--cluster-yes",
                "--cluster-pipeline",
                "100",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=120,
        )

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


@contextlib.contextmanager
def private_redis_cluster(workdir: Path, **kwargs: int) -> Iterator[RedisClusterProcesses]:
    cluster = RedisClusterProcesses(workdir, **kwargs)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
