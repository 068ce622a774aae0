"""Shared fixtures. Integration tests get a real redis-server that this harness starts itself on
a free port, in a temporary directory, with nothing persisted; it is never the machine's shared
instance, so flushing it is safe."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(n: int) -> list[int]:
    """``n`` distinct free ports: the sockets are held open together while the kernel picks, so
    it cannot hand the same port out twice (one at a time, a just-closed port may come back)."""
    with contextlib.ExitStack() as stack:
        socks = [
            stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(n)
        ]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """SIGTERM, then SIGKILL if the process has not exited within ``timeout`` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def redis_command(exe: str, port: int, workdir: Path, *options: str) -> list[str]:
    """argv of a private redis-server on 127.0.0.1:``port`` in ``workdir``, nothing persisted;
    ``options`` (``"--appendonly", "yes"`` ...) come last, so they override these defaults."""
    return [
        exe,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(workdir),
        "--maxmemory-policy",
        "noeviction",
        "--loglevel",
        "warning",
        *options,
    ]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a private redis-server for the whole test session."""
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.fail("redis-server is not installed; `make test` installs it (make install-system)")
    port = free_port()
    workdir: Path = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        redis_command(exe, port, workdir), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for_port(port)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def redis_url(redis_server: str) -> Iterator[str]:
    """The private server's URL, flushed before each test that uses it."""
    import redis

    client = redis.Redis.from_url(redis_server)
    client.flushall()
    client.close()
    return redis_server


@pytest.fixture(scope="session")
def redis_cluster_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``redis+cluster://`` URL of a private 6-node Redis Cluster for the whole session."""
    from tests.redis_process import private_redis_cluster

    with private_redis_cluster(tmp_path_factory.mktemp("redis-cluster")) as cluster:
        yield cluster.url


@pytest.fixture
def redis_cluster_url(redis_cluster_server: str) -> str:
    """The private cluster's URL, every master flushed before each test that uses it."""
    import redis

    from service.store.redis_cluster import ClusterSeeds

    for host, port in ClusterSeeds.parse(redis_cluster_server).nodes:
        with redis.Redis(host=host, port=port) as client:
            if client.info("replication")["role"] == "master":
                client.flushall()
    return redis_cluster_server


@pytest.fixture(params=["off", "require"])
def native_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Runs a test on the torch path (``off``) and on the native kernels (``require``; skipped
    where they cannot be built)."""
    from liquidcore import native
    from tests.native_kernels import skip_without_native_kernels

    if request.param == "require":
        skip_without_native_kernels()
    monkeypatch.setenv("LIQUIDCORE_NATIVE", request.param)
    native.reset()
    yield str(request.param)
    native.reset()
