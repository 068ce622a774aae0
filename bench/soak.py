"""Soak: steady load plus WebSocket subscribers connecting and leaving, for minutes; the service
process's resident memory and open file descriptors sampled from /proc over time.

One ``liquid serve`` process (the demo model) on a private redis-server (AOF everysec), both
started by the test harness on free ports. Load: ``--streams`` streams, ~``--rate`` events/s,
from the chaos campaign's retrying clients (tests/chaos/load.py). Live feeds: ``--subscribers``
clients, each in a loop connecting to a random stream's ``/live`` socket, reading for 0.5-3 s
and closing. Reported: the RSS slope (MB/min, least-squares line over the samples after
``--warmup`` seconds), RSS and fd counts at start, after warm-up, at the end of the load and
``--settle`` seconds after every client left (what a leak would leave behind).

    make soak                                   # 3 minutes
    SOAK_ARGS="--duration 600" make soak
    PYTHONPATH=. .venv/bin/python bench/soak.py --duration 60 --json /tmp/soak.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Sample:
    t: float  # seconds since the load started
    rss_mb: float
    fds: int


@dataclass
class LiveTally:
    sessions: int = 0
    messages: int = 0
    errors: int = 0
    samples: list[str] = field(default_factory=list)


def sample(pid: int, t: float) -> Sample:
    """RSS (VmRSS) and open descriptors of process ``pid``, from /proc."""
    rss_kb = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss_kb = int(line.split()[1])
    return Sample(t, rss_kb / 1024, len(os.listdir(f"/proc/{pid}/fd")))


def slope_mb_per_min(samples: list[Sample]) -> float:
    if len(samples) < 2:
        return float("nan")
    t_min = np.array([s.t for s in samples]) / 60
    return float(np.polyfit(t_min, np.array([s.rss_mb for s in samples]), 1)[0])


async def sample_every(
    pid: int, start: float, interval: float, out: list[Sample], stop: asyncio.Event
) -> None:
    while not stop.is_set():
        out.append(sample(pid, time.monotonic() - start))
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)


async def subscriber(
    ws_url: str, streams: list[str], until: float, rng: random.Random, tally: LiveTally
) -> None:
    """Connect to a random stream's live feed, read for a while, leave; again until ``until``."""
    from websockets.asyncio.client import connect

    while time.monotonic() < until:
        stream = rng.choice(streams)
        stay = rng.uniform(0.5, 3.0)
        try:
            async with connect(f"{ws_url}/v1/streams/{stream}/live", open_timeout=10) as ws:
                tally.sessions += 1
                leave_at = time.monotonic() + stay
                while (left := leave_at - time.monotonic()) > 0:
                    try:
                        await asyncio.wait_for(ws.recv(), left)
                        tally.messages += 1
                    except asyncio.TimeoutError:
                        break
        except Exception as exc:  # counted and shown; the soak goes on
            tally.errors += 1
            if len(tally.samples) < 5:
                tally.samples.append(repr(exc)[:200])
            await asyncio.sleep(0.5)


async def soak(args: argparse.Namespace, pid: int, url: str) -> dict[str, Any]:
    from liquidcore.checkpoint import load_model
    from service.settings import DEMO_MODEL_DIR
    from tests.chaos.load import LoadShape, run_load, stream_ids

    model = load_model(DEMO_MODEL_DIR)
    shape = LoadShape(streams=args.streams, rate=args.rate, duration_s=args.duration, drain_s=30)
    prefix = "soak"
    samples: list[Sample] = []
    live = LiveTally()
    stop = asyncio.Event()
    start = time.monotonic()
    sampler = asyncio.create_task(sample_every(pid, start, args.interval, samples, stop))
    ws_url = url.replace("http://", "ws://")
    names = stream_ids(prefix, args.streams)
    ledger, *_ = await asyncio.gather(
        run_load([url], shape, prefix, model.input_mean.tolist(), model.input_std.tolist()),
        *(
            subscriber(ws_url, names, start + args.duration, random.Random(i), live)
            for i in range(args.subscribers)
        ),
    )
    end_of_load = sample(pid, time.monotonic() - start)
    await asyncio.sleep(args.settle)
    stop.set()
    await sampler
    settled = sample(pid, time.monotonic() - start)
    steady = [s for s in samples if s.t >= args.warmup]
    fds = [s.fds for s in steady] or [0]
    t = ledger.tally
    return {
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "events_acknowledged": ledger.acknowledged,
        "requests": t.requests,
        "status_5xx": t.status_5xx,
        "status_503": t.status_503,
        "status_4xx": sum(t.status_4xx.values()),
        "transport_errors": t.transport_errors,
        "ws_sessions": live.sessions,
        "ws_messages": live.messages,
        "ws_errors": live.errors,
        "ws_error_samples": live.samples,
        "rss_mb_start": samples[0].rss_mb,
        "rss_mb_after_warmup": steady[0].rss_mb if steady else float("nan"),
        "rss_mb_end_of_load": end_of_load.rss_mb,
        "rss_mb_settled": settled.rss_mb,
        "rss_slope_mb_per_min": slope_mb_per_min(steady),
        "fds_start": samples[0].fds,
        "fds_min": min(fds),
        "fds_max": max(fds),
        "fds_end_of_load": end_of_load.fds,
        "fds_settled": settled.fds,
        "samples": [[round(s.t, 1), round(s.rss_mb, 1), s.fds] for s in samples],
    }


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--duration", type=float, default=180.0, help="seconds of load")
    p.add_argument("--warmup", type=float, default=30.0, help="seconds left out of the fit")
    p.add_argument("--settle", type=float, default=10.0, help="wait after the load, then sample")
    p.add_argument("--interval", type=float, default=2.0, help="seconds between samples")
    p.add_argument("--streams", type=int, default=100)
    p.add_argument("--rate", type=float, default=200.0, help="events/s offered")
    p.add_argument("--subscribers", type=int, default=20, help="WebSocket clients churning")
    p.add_argument("--json", type=Path, help="write the result (with every sample) here")
    args = p.parse_args(argv)
    if not 0 <= args.warmup < args.duration:
        p.error("--warmup must be >= 0 and shorter than --duration")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if str(REPO) not in sys.path:  # the harness lives in tests/
        sys.path.insert(0, str(REPO))
    from tests.chaos.redis_process import RedisProcess
    from tests.service_process import start_service

    with tempfile.TemporaryDirectory(prefix="liquid-soak-") as tmp:
        redis = RedisProcess(Path(tmp) / "redis")
        redis.start()
        try:
            service = start_service(["--redis-url", redis.url], Path(tmp))
            try:
                result = asyncio.run(soak(args, service.proc.pid, service.url))
            finally:
                service.stop()
        finally:
            redis.stop()
    result["machine"] = (
        f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    summary = {k: v for k, v in result.items() if k != "samples"}
    print(json.dumps(summary, indent=2))
    print(
        f"RSS slope {result['rss_slope_mb_per_min']:+.2f} MB/min after {args.warmup:g} s "
        f"(RSS {result['rss_mb_after_warmup']:.0f} -> {result['rss_mb_end_of_load']:.0f} MB, "
        f"{result['rss_mb_settled']:.0f} MB settled); fds {result['fds_min']}-{result['fds_max']} "
        f"under load, {result['fds_settled']} settled; {result['events_acknowledged']} events, "
        f"{result['ws_sessions']} WebSocket sessions"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
