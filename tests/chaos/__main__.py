"""``python -m tests.chaos`` (``make chaos``): the whole campaign, one scenario per fault on one
cluster (Redis with AOF, two replicas), a summary table printed and written into docs/chaos.md.

    python -m tests.chaos                      # every fault, ~40 s each
    python -m tests.chaos --faults replica_sigkill,redis_sigstop --duration 12
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

from liquidcore.checkpoint import load_model
from service.settings import DEMO_MODEL_DIR
from tests.chaos.campaign import Result, markdown_table, run_scenario
from tests.chaos.cluster import Cluster
from tests.chaos.faults import FAULTS, fault_named
from tests.chaos.load import LoadShape

TABLE_START = "<!-- chaos-table:start -->"
TABLE_END = "<!-- chaos-table:end -->"


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__.split("\n")[0])
    p.add_argument("--faults", default=",".join(FAULTS), help="comma-separated; default: all")
    p.add_argument("--streams", type=int, default=200, help="concurrent streams (clients)")
    p.add_argument("--rate", type=float, default=300.0, help="events/s offered, all streams")
    p.add_argument("--duration", type=float, default=24.0, help="seconds of load per fault")
    p.add_argument("--fault-at", type=float, default=6.0, help="seconds into the load")
    p.add_argument(
        "--request-timeout",
        type=float,
        default=3.0,
        help="seconds before a client gives up on a request and sends it again (shorter than "
        "the 8 s pause, so retries race the first attempt)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="markdown file whose table section is replaced")
    p.add_argument("--json", type=Path, help="write every row and detail as JSON here")
    return p.parse_args(argv)


def write_table(path: Path, table: str, header: str) -> None:
    """Replace the text between the table markers of ``path`` (appended when absent)."""
    text = path.read_text() if path.exists() else ""
    block = f"{TABLE_START}\n{header}\n\n{table}\n{TABLE_END}"
    if TABLE_START in text and TABLE_END in text:
        before, _, rest = text.partition(TABLE_START)
        _, _, after = rest.partition(TABLE_END)
        text = before + block + after
    else:
        text = text.rstrip() + ("\n\n" if text else "") + block + "\n"
    path.write_text(text)


async def campaign(args: argparse.Namespace) -> list[Result]:
    faults = [fault_named(name.strip()) for name in args.faults.split(",") if name.strip()]
    shape = LoadShape(
        streams=args.streams,
        rate=args.rate,
        duration_s=args.duration,
        request_timeout_s=args.request_timeout,
        seed=args.seed,
    )
    model = load_model(DEMO_MODEL_DIR)
    results = []
    with tempfile.TemporaryDirectory(prefix="liquid-chaos-") as tmp:
        cluster = await asyncio.to_thread(Cluster.start, Path(tmp))
        try:
            for fault in faults:
                print(f"-- {fault.name}: {fault.description}", flush=True)
                result = await run_scenario(cluster, fault, shape, model, fault_at_s=args.fault_at)
                print(json.dumps(result.row()), flush=True)
                for line in result.verdict.details[:10] + result.ledger.tally.samples:
                    print("   ", line, flush=True)
                results.append(result)
        finally:
            await asyncio.to_thread(cluster.stop)
    return results


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    results = asyncio.run(campaign(args))
    table = markdown_table(results)
    print(table)
    header = (
        f"Measured {started} on {platform.machine()} ({platform.python_version()}): 2 replicas, "
        f"{args.streams} streams, ~{args.rate:g} events/s offered for {args.duration:g} s per "
        f"fault, the fault at {args.fault_at:g} s, client timeout {args.request_timeout:g} s, "
        f"seed {args.seed}. Command: `make chaos`."
    )
    if args.out:
        write_table(args.out, table, header)
    if args.json:
        args.json.write_text(
            json.dumps(
                [
                    {**r.row(), "details": r.verdict.details, "samples": r.ledger.tally.samples}
                    for r in results
                ],
                indent=2,
            )
        )
    failed = [
        r
        for r in results
        if r.verdict.doubled
        or r.verdict.corrupt
        or (r.verdict.lost and not r.fault.may_lose_last_second)
    ]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
