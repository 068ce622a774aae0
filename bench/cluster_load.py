"""One Redis vs a 3-master Redis Cluster on the same machine: the same service (one worker),
the same model and workloads as bench/service_load.py (wrk, closed loop), in interleaved
rounds; medians and spread.

    PYTHONPATH=. .venv/bin/python bench/cluster_load.py --rounds 3   # or: make bench-cluster

Stores, each started here on free ports:

- one Redis (redis-server, nothing persisted);
- a Redis Cluster of 3 masters (no replicas): the batch split per slot, pipelined per master;
- a Redis Cluster of 3 masters + 3 replicas with ``--redis-min-replicas-ack 1`` (WAIT).

Everything shares the machine's cores: the cluster's extra processes compete with the service
for them, so this measures the client-side cost of a cluster, not its capacity on separate
hosts.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from bench.service_load import Server, Table, fmt_cell, make_model, run_wrk, start, start_redis
from tests.redis_process import RedisClusterProcesses, private_redis_cluster

WORKLOADS = {
    "POST one event, 64 connections": ("single", 1, 64, "req/s"),
    "POST /v1/events, 256 events over 256 streams (16 connections)": ("multi256", 256, 16, "ev/s"),
}


@contextmanager
def single_redis(workdir: Path) -> Iterator[str]:
    proc, url = start_redis(workdir)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@contextmanager
def cluster(workdir: Path, replicas: int) -> Iterator[RedisClusterProcesses]:
    with private_redis_cluster(workdir, masters=3, replicas_per_master=replicas) as c:
        yield c


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=5.0, help="per measurement")
    p.add_argument("--max-delay-ms", type=float, default=2.0, help="the service's batch delay")
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="liquid-bench-cluster-"))
    model = tmp / "model"
    make_model(model)
    ours = ["-m", "service", "serve", "--model", str(model), "--log-level", "warning"]
    ours += ["--max-delay-ms", str(args.max_delay_ms), "--workers", "1"]
    servers: dict[str, Server] = {}
    try:
        with ExitStack() as stack:
            (tmp / "one").mkdir()
            one = stack.enter_context(single_redis(tmp / "one"))
            three = stack.enter_context(cluster(tmp / "c3", replicas=0))
            six = stack.enter_context(cluster(tmp / "c6", replicas=1))
            targets = {
                "one Redis": [*ours, "--redis-url", one],
                "cluster, 3 masters": [*ours, "--redis-url", three.url],
                "cluster, 3+3, WAIT 1": [
                    *[*ours, "--redis-url", six.url],
                    *["--redis-min-replicas-ack", "1"],
                ],
            }
            for label, argv in targets.items():
                servers[label] = start(label, argv, tmp, True, "/readyz")
            table = Table()
            for rnd in range(args.rounds):
                for name, (mode, events, conns, unit) in WORKLOADS.items():
                    for label, server in servers.items():
                        tag = f"r{rnd}-{abs(hash((name, label))) % 10**6}"
                        run_wrk(server.url, "single", 1, 8, 1.0, tag + "w")  # warm-up
                        r = run_wrk(server.url, mode, events, conns, args.seconds, tag)
                        table.add(name, label, r)
                        print(f"round {rnd + 1} | {name} | {label}: {fmt_cell([r], unit)}")
            load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
            print(f"\nmedian of {args.rounds} interleaved rounds (min–max), {args.seconds:g} s")
            print(f"each; {load}\n")
            print("| workload | " + " | ".join(servers) + " |")
            print("|---" * (len(servers) + 1) + "|")
            for name, (*_, unit) in WORKLOADS.items():
                cells = [fmt_cell(table.cells.get((name, c), []), unit) for c in servers]
                print(f"| {name} | " + " | ".join(cells) + " |")
            for server in servers.values():
                server.stop()
    finally:
        for server in servers.values():
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
