"""``python -m tests.chaos.redis_cluster_campaign`` (``make chaos-cluster``): the service on a
fresh 3-master Redis Cluster (3 replicas) under steady load, one disturbance per scenario, with
and without ``LIQUID_REDIS_MIN_REPLICAS_ACK=1``; every acknowledged event checked afterwards
(:mod:`tests.cluster_load`). Prints one line per run and a Markdown table.

    python -m tests.chaos.redis_cluster_campaign --rounds 3 --streams 24
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from liquidcore.checkpoint import load_model
from service.settings import DEMO_MODEL_DIR
from tests.cluster_load import EventLoad, LoadReport
from tests.redis_process import RedisClusterProcesses, private_redis_cluster
from tests.service_process import start_service


def reshard(cluster: RedisClusterProcesses) -> None:
    source, target = cluster.masters()[:2]
    cluster.reshard(source, target, slots=2000)


def kill_master(cluster: RedisClusterProcesses) -> None:
    cluster.masters()[0].kill()
    cluster.wait_ok()


SCENARIOS: dict[str, Callable[[RedisClusterProcesses], None]] = {
    "reshard 2000 slots": reshard,
    "master SIGKILL": kill_master,
}


def run_once(
    workdir: Path, scenario: str, wait: int, streams: int, settle_s: float
) -> tuple[LoadReport, float]:
    with private_redis_cluster(workdir / "cluster") as cluster:
        args = ["--model", str(DEMO_MODEL_DIR), "--redis-url", cluster.url]
        env = {"LIQUID_REDIS_MIN_REPLICAS_ACK": str(wait)}
        with ThreadPoolExecutor(2) as pool:
            services = list(pool.map(lambda _: start_service(args, workdir, env=env), range(2)))
        try:
            load = EventLoad([s.url for s in services], streams, prefix="c", features=6)
            time.sleep(settle_s)
            t0 = time.monotonic()
            SCENARIOS[scenario](cluster)
            fault_s = time.monotonic() - t0
            time.sleep(settle_s)
            return load.stop(load_model(DEMO_MODEL_DIR)), fault_s
        finally:
            for s in services:
                s.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--streams", type=int, default=24)
    p.add_argument("--settle", type=float, default=3.0, help="seconds of load before and after")
    a = p.parse_args()
    rows = []
    for scenario in SCENARIOS:
        for wait in (0, 1):
            for r in range(a.rounds):
                with tempfile.TemporaryDirectory(prefix="liquid-cluster-") as tmp:
                    report, fault_s = run_once(Path(tmp), scenario, wait, a.streams, a.settle)
                line = f"{scenario} | WAIT {wait} | round {r + 1} | {fault_s:.1f} s | "
                print(line + report.summary(), flush=True)
                rows.append((scenario, wait, report))
    print(
        "\n| scenario | min_replicas_ack | runs | acknowledged | 503 answers | other 5xx "
        "| lost | applied twice | corrupt streams |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for scenario in SCENARIOS:
        for wait in (0, 1):
            reps = [rep for s, w, rep in rows if s == scenario and w == wait]
            print(
                f"| {scenario} | {wait} | {len(reps)} | {sum(x.acked for x in reps)} | "
                f"{sum(x.statuses[503] for x in reps)} | {sum(x.bad_5xx for x in reps)} | "
                f"{sum(x.verdict.lost for x in reps)} | {sum(x.verdict.doubled for x in reps)} | "
                f"{sum(x.verdict.corrupt for x in reps)} |"
            )


if __name__ == "__main__":
    main()
