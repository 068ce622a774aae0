"""Service load benchmark: our service (embedded store and Redis) beside two references, under
wrk, in interleaved rounds; medians and spread in one table, and a per-batch time breakdown
from the service's own /metrics.

    make bench-service        # or: .venv/bin/python bench/service_load.py --rounds 3

Servers (each its own process, all on 127.0.0.1, started here and stopped at the end):

- ours, embedded: ``liquid serve`` with the in-process store;
- ours, Redis: ``liquid serve --redis-url`` on a redis-server started here on a free port
  (also with ``--torch-threads 2``, torch's own default on 2 cores, to measure the thread rule);
- naive, Redis (REFERENCE, bench/reference/naive_server.py): GET, one model.step, SET;
- bare (REFERENCE, bench/reference/bare_server.py): same routes, pydantic parse, canned answer.

All serve the same model: a CfC with 64 units and a 128-unit backbone on 6 inputs (random
weights; the cost does not depend on them). Workloads (closed loop, wrk with bench/wrk/events.lua):
one event per POST at 8 and 64 connections; 50 events of one stream per POST; 256 events over
256 streams per ``POST /v1/events``. WebSocket ingest: 64 sockets from a separate asyncio
process using ``service.client.LiveStream`` (its CPU is reported), and the same from
``bench/ws_raw.py``, a frame-level generator that uses far less CPU than the client. Open loop:
a constant-rate raw-asyncio generator at half of our measured single-event maximum (64
connections, pipelined);
latency counts from each request's scheduled send time, so a stall is not hidden
(no coordinated omission). wrk2 is not packaged by Debian, hence this generator.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service.metrics import STAGES

REPO = Path(__file__).resolve().parents[1]
WRK_SCRIPT = REPO / "bench" / "wrk" / "events.lua"
FEATURES = 6


# -- processes -----------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 120.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


@dataclass
class Server:
    label: str
    port: int
    proc: subprocess.Popen[bytes]
    ours: bool

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)


def start(label: str, argv: list[str], logdir: Path, ours: bool, ready: str = "/docs") -> Server:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIQUID_")}
    env["PYTHONPATH"] = str(REPO)
    log = open(logdir / f"{label.replace(' ', '_').replace(',', '')}.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, *argv, "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    server = Server(label, port, proc, ours)
    wait_http(server.url + ready)
    return server


def start_redis(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    exe = shutil.which("redis-server")
    if exe is None:
        raise SystemExit("redis-server is not installed (make install-system)")
    proc = subprocess.Popen(
        [
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
            "--loglevel",
            "warning",
        ],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return proc, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("redis-server did not start")


def make_model(path: Path) -> None:
    """A CfC with 64 units and a 128-unit backbone on 6 inputs, 4 outputs (the issue's size)."""
    import torch

    from liquidcore.cells.cfc import CfCCell
    from liquidcore.checkpoint import save_model
    from liquidcore.heads import ReadoutHead
    from liquidcore.model import LiquidModel

    torch.manual_seed(0)
    cell = CfCCell(FEATURES, 64, backbone_units=128, backbone_layers=1)
    model = LiquidModel(cell, ReadoutHead(cell.output_size, 4), default_dt=0.1, name="bench")
    save_model(model.eval(), path)


# -- load generators -----------------------------------------------------------------------
@dataclass
class Result:
    rate: float  # requests/s (or events/s for event workloads: see Workload.events)
    p50_ms: float = math.nan
    p99_ms: float = math.nan
    p999_ms: float = math.nan
    bad: int = 0
    note: str = ""


def run_wrk(
    url: str, mode: str, events: int, conns: int, seconds: float, tag: str, ids: bool = False
) -> Result:
    env = {**os.environ, "LS_MODE": mode, "LS_EVENTS": str(events), "LS_TAG": tag}
    env["LS_IDS"] = "1" if ids else "0"
    env["LS_FEATURES"] = str(FEATURES)
    threads = min(2, conns)
    argv = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{max(1, round(seconds))}s", "--timeout", "10s"]
    argv += ["-s", str(WRK_SCRIPT), url]
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed: {done.stdout[-500:]} {done.stderr[-500:]}")
    out = done.stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("{"))
    d = json.loads(line)
    seconds_run = d["duration_us"] / 1e6
    return Result(
        rate=d["requests"] * events / seconds_run,
        p50_ms=d["p50_us"] / 1000,
        p99_ms=d["p99_us"] / 1000,
        p999_ms=d["p999_us"] / 1000,
        bad=d["bad"] + d["socket_errors"],
    )


def run_ws(
    url: str, sockets: int, seconds: float, tag: str, window: int, client: str = "ws-client"
) -> Result:
    """A WebSocket ingest client in its own process (``ws-client``: the product's
    ``LiveStream``; ``ws-raw``: :mod:`bench.ws_raw`, frame-level); its CPU share is reported."""
    argv = [sys.executable, __file__, client, url, str(sockets), str(seconds), tag, str(window)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(argv, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"the WebSocket client {client} failed: {done.stderr[-1500:]}")
    d = json.loads(done.stdout.strip().splitlines()[-1])
    return Result(
        rate=d["events"] / d["seconds"],
        p50_ms=d["p50_ms"],
        p99_ms=d["p99_ms"],
        bad=int(d["errors"]),
        note=f"client CPU {100 * d['cpu_s'] / d['seconds']:.0f}%",
    )


async def _ws_client(
    url: str, sockets: int, seconds: float, tag: str, window: int
) -> dict[str, Any]:
    import contextlib

    from service.client import LiveStream

    latencies: list[float] = []
    errors = 0
    sent = 0
    stop_at = 0.0

    async def one(feed: LiveStream) -> None:
        nonlocal errors, sent
        inflight: list[tuple[float, asyncio.Future[tuple[int, Any]]]] = []
        n = 0
        while time.monotonic() < stop_at or inflight:
            while time.monotonic() < stop_at and len(inflight) < window:
                n += 1
                body = {"t": 1.7e9 + n * 0.01, "x": [0.1] * FEATURES}
                inflight.append((time.perf_counter(), await feed.submit(body)))
            t0, fut = inflight.pop(0)
            status, _ = await fut
            latencies.append(time.perf_counter() - t0)
            sent += 1
            errors += status != 200

    async with contextlib.AsyncExitStack() as stack:
        feeds = []
        for i in range(sockets):  # subscribe first, one after another: not part of the timing
            feed = LiveStream(url, f"{tag}-ws-{i}", buffer=1, open_timeout=30)
            feeds.append(await stack.enter_async_context(feed))
        stop_at = time.monotonic() + seconds
        cpu0, t0 = time.process_time(), time.monotonic()
        await asyncio.gather(*(one(f) for f in feeds))
        took = time.monotonic() - t0
        cpu = time.process_time() - cpu0
    latencies.sort()
    q = lambda p: 1000 * latencies[min(len(latencies) - 1, int(p * len(latencies)))]  # noqa: E731
    return {
        "events": sent,
        "seconds": took,
        "errors": errors,
        "cpu_s": cpu,
        "p50_ms": q(0.5),
        "p99_ms": q(0.99),
    }


async def _open_loop(url: str, rate: float, seconds: float, tag: str) -> Result:
    """Constant-rate single-event POSTs, open loop: each request is written at its scheduled
    time on one of a pool of keep-alive connections (HTTP/1.1 pipelining, so a slow answer
    never delays the next request), answers are read in order per connection, and latency
    counts from the scheduled time. Raw asyncio streams, not httpx: the generator has to stay
    far below the server's CPU."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    n_total = int(rate * seconds)
    pool = 64
    lat: list[float] = []
    bad = 0
    conns = [await asyncio.open_connection(host, port) for _ in range(pool)]
    sent: list[list[float]] = [[] for _ in range(pool)]  # scheduled times, in send order

    async def read(k: int, reader: asyncio.StreamReader, expect: int) -> None:
        nonlocal bad
        for j in range(expect):
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            lat.append(time.perf_counter() - sent[k][j])
            bad += status != 200

    per_conn = [len(range(k, n_total, pool)) for k in range(pool)]
    readers = [asyncio.create_task(read(k, r, per_conn[k])) for k, (r, _) in enumerate(conns)]
    t0 = time.perf_counter() + 0.05
    for i in range(n_total):
        due = t0 + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        body = json.dumps({"t": 1.7e9 + i * 0.01, "x": [0.1] * FEATURES}).encode()
        head = (
            f"POST /v1/streams/{tag}-ol-{i % 1024}/events HTTP/1.1\r\nHost: {host}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        k = i % pool
        sent[k].append(due)
        conns[k][1].write(head + body)
    await asyncio.gather(*readers)
    took = time.perf_counter() - t0
    for _, w in conns:
        w.close()
    lat.sort()
    q = lambda p: 1000 * lat[min(len(lat) - 1, int(p * len(lat)))]  # noqa: E731
    return Result(len(lat) / took, q(0.5), q(0.99), q(0.999), bad, note=f"target {rate:.0f}/s")


def run_open_loop(url: str, rate: float, seconds: float, tag: str) -> Result:
    argv = [sys.executable, __file__, "open-loop", url, str(rate), str(seconds), tag]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(argv, capture_output=True, text=True, check=True, env=env).stdout
    d = json.loads(out.strip().splitlines()[-1])
    return Result(**d)


# -- the service's own breakdown -----------------------------------------------------------
# liquid_stage_seconds{stage} (service.metrics.STAGES): per request (decode, validate, encode)
# or per batch (the rest).
# The service's own CPU work per event, outside the model call and the Redis round trips.
OWN_WORK = ("decode", "validate", "plan", "encode")


def scrape(url: str) -> dict[str, float]:
    import httpx

    out: dict[str, float] = {}
    for line in httpx.get(url + "/metrics", timeout=10).text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, _, value = line.rpartition(" ")
        out[name] = float(value)
    return out


def breakdown(before: dict[str, float], after: dict[str, float]) -> dict[str, Any]:
    """Per stage: ms per observation (a request or a batch) and µs per event; and the
    service's own work per event (:data:`OWN_WORK`)."""

    def delta(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    batches = delta("liquid_batch_size_count")
    events = delta("liquid_batch_size_sum")
    rows: dict[str, Any] = {"batches": batches, "mean batch": events / batches if batches else 0}
    own = 0.0
    for stage in STAGES:
        n = delta(f'liquid_stage_seconds_count{{stage="{stage}"}}')
        total = delta(f'liquid_stage_seconds_sum{{stage="{stage}"}}')
        rows[f"{stage} ms"] = 1000 * total / n if n else math.nan
        rows[f"{stage} µs/ev"] = 1e6 * total / events if events else math.nan
        if stage in OWN_WORK:
            own += total
    rows["own work µs/ev"] = 1e6 * own / events if events else math.nan
    return rows


# -- the run -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Workload:
    name: str
    unit: str
    run: Callable[[Server, str], Result]
    targets: tuple[str, ...]


@dataclass
class Table:
    cells: dict[tuple[str, str], list[Result]] = field(default_factory=dict)

    def add(self, workload: str, target: str, r: Result) -> None:
        self.cells.setdefault((workload, target), []).append(r)

    def median(self, workload: str, target: str) -> float:
        rs = self.cells.get((workload, target), [])
        return statistics.median(r.rate for r in rs) if rs else math.nan


def fmt_cell(rs: list[Result], unit: str) -> str:
    if not rs:
        return "–"
    rates = [r.rate for r in rs]
    med = statistics.median(rates)
    text = f"{med:,.0f} {unit} ({min(rates):,.0f}–{max(rates):,.0f})"
    p99 = statistics.median(r.p99_ms for r in rs)
    if not math.isnan(p99):
        text += f", p99 {p99:.0f} ms"
    bad = sum(r.bad for r in rs)
    if bad:
        text += f", {bad} bad"
    notes = sorted({r.note for r in rs if r.note})
    if notes:
        text += ", " + "; ".join(notes[:1])
    return text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=5.0, help="per measurement")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds of load before each")
    p.add_argument("--max-delay-ms", type=float, default=2.0, help="the service's batch delay")
    p.add_argument("--json", type=Path, help="write every measurement here")
    p.add_argument("--plot", type=Path, help="write a bar plot (PNG) here")
    p.add_argument("--ws-window", type=int, default=8, help="events in flight per socket")
    p.add_argument(
        "--only",
        action="append",
        default=[],
        help="run only the workloads whose name contains this text (repeatable); the open loop "
        "runs only with the single-event 64-connection workload",
    )
    p.add_argument(
        "--servers",
        action="append",
        default=[],
        help="start and drive only the servers whose label contains this text (repeatable)",
    )
    args = p.parse_args(argv)
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk (make bench-service does)")

    tmp = Path(tempfile.mkdtemp(prefix="liquid-bench-"))
    model = tmp / "model"
    make_model(model)
    redis_proc, redis_url = start_redis(tmp)
    serve = ["-m", "service", "serve", "--model", str(model), "--log-level", "warning"]
    serve += ["--max-delay-ms", str(args.max_delay_ms)]
    ours = [*serve, "--workers", "1"]
    servers: dict[str, Server] = {}
    ref = REPO / "bench" / "reference"
    argvs: dict[str, tuple[list[str], bool]] = {
        "ours, embedded": (ours, True),
        "ours, Redis": ([*ours, "--redis-url", redis_url], True),
        "ours, Redis, torch 2 threads": (
            [*ours, "--redis-url", redis_url, "--torch-threads", "2"],
            True,
        ),
        "ours, Redis, 2 workers": ([*serve, "--workers", "2", "--redis-url", redis_url], True),
        "naive, Redis (reference)": (
            [str(ref / "naive_server.py"), "--redis-url", redis_url, "--model", str(model)],
            False,
        ),
        "bare FastAPI (reference)": ([str(ref / "bare_server.py")], False),
    }
    try:
        for label, (argv, is_ours) in argvs.items():
            if args.servers and not any(t in label for t in args.servers):
                continue
            servers[label] = start(label, argv, tmp, is_ours, "/readyz" if is_ours else "/docs")
        return measure(args, servers)
    finally:
        for s in servers.values():
            s.stop()
        redis_proc.terminate()
        redis_proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


def measure(args: argparse.Namespace, servers: dict[str, Server]) -> int:
    sec = args.seconds
    ours2 = ("ours, embedded", "ours, Redis")
    all_http = (*ours2, "naive, Redis (reference)", "bare FastAPI (reference)")
    threads = "ours, Redis, torch 2 threads"
    workers2 = "ours, Redis, 2 workers"
    workloads = [
        Workload(
            "POST one event, 8 connections",
            "req/s",
            lambda s, tag: run_wrk(s.url, "single", 1, 8, sec, tag),
            all_http,
        ),
        Workload(
            "POST one event, 64 connections",
            "req/s",
            lambda s, tag: run_wrk(s.url, "single", 1, 64, sec, tag),
            (*all_http, threads, workers2),
        ),
        Workload(
            "50 events per POST, one stream (64 connections)",
            "ev/s",
            lambda s, tag: run_wrk(s.url, "stream50", 50, 64, sec, tag),
            (*ours2, "naive, Redis (reference)"),
        ),
        Workload(
            "POST /v1/events, 256 events over 256 streams (16 connections)",
            "ev/s",
            lambda s, tag: run_wrk(s.url, "multi256", 256, 16, sec, tag),
            (*ours2, "bare FastAPI (reference)", threads, workers2),
        ),
        Workload(
            "same, every event with an id (as the Python client sends)",
            "ev/s",
            lambda s, tag: run_wrk(s.url, "multi256", 256, 16, sec, tag, ids=True),
            (*ours2, workers2),
        ),
        Workload(
            f"WebSocket ingest, 64 sockets ({args.ws_window} in flight each)",
            "ev/s",
            lambda s, tag: run_ws(s.url, 64, sec, tag, args.ws_window),
            (*ours2, workers2),
        ),
        Workload(
            f"same, frame-level client ({args.ws_window} in flight each)",
            "ev/s",
            lambda s, tag: run_ws(s.url, 64, sec, tag, args.ws_window, "ws-raw"),
            (*ours2, workers2),
        ),
    ]
    if args.only:
        workloads = [w for w in workloads if any(t in w.name for t in args.only)]
    single64 = any(w.name == "POST one event, 64 connections" for w in workloads)
    table = Table()
    breakdowns: dict[tuple[str, str], list[dict[str, Any]]] = {}
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"# load before: {uptime}", flush=True)
    for rnd in range(args.rounds):
        for w in workloads:
            for label in w.targets:
                server = servers.get(label)
                if server is None:
                    continue
                tag = f"r{rnd}-{abs(hash((w.name, label))) % 10**6}"
                if args.warmup > 0:
                    run_wrk(server.url, "single", 1, 8, args.warmup, tag + "w")
                before = scrape(server.url) if server.ours else {}
                r = w.run(server, tag)
                if server.ours:
                    breakdowns.setdefault((w.name, label), []).append(
                        breakdown(before, scrape(server.url))
                    )
                table.add(w.name, label, r)
                print(f"round {rnd + 1} | {w.name} | {label}: {fmt_cell([r], w.unit)}", flush=True)
        # open loop at half of our max single-event rate (64 connections), per store
        for label in (*ours2, workers2) if single64 else ():
            if label not in servers:
                continue
            max_rate = table.median("POST one event, 64 connections", label)
            r = run_open_loop(servers[label].url, max_rate / 2, sec, f"r{rnd}-ol{len(label)}")
            table.add("open loop at half of our max rate, one event per POST", label, r)
            print(f"round {rnd + 1} | open loop | {label}: {fmt_cell([r], 'req/s')}", flush=True)
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"# load after: {uptime}")
    report(table, workloads, breakdowns, args)
    return 0


def report(
    table: Table,
    workloads: list[Workload],
    breakdowns: dict[tuple[str, str], list[dict[str, Any]]],
    args: argparse.Namespace,
) -> None:
    cols = [
        "ours, embedded",
        "ours, Redis",
        "ours, Redis, torch 2 threads",
        "ours, Redis, 2 workers",
        "naive, Redis (reference)",
        "bare FastAPI (reference)",
    ]
    names = [w.name for w in workloads] + ["open loop at half of our max rate, one event per POST"]
    units = {w.name: w.unit for w in workloads}
    print(f"\nmedian of {args.rounds} interleaved rounds (min–max), {args.seconds:g} s each\n")
    print("| workload | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for name in names:
        unit = units.get(name, "req/s")
        cells = [fmt_cell(table.cells.get((name, c), []), unit) for c in cols]
        if name.startswith("open loop"):
            cells = [
                _open_cell(table.cells.get((name, c), [])) if (name, c) in table.cells else "–"
                for c in cols
            ]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("\nper-stage breakdown from /metrics (liquid_stage_seconds; medians over rounds):")
    print("ms per request (decode, validate, encode) or per batch (the rest), and µs per event;")
    print(f"own work = {' + '.join(OWN_WORK)} per event\n")
    keys = ["batches", "mean batch", *(f"{s} ms" for s in STAGES), "own work µs/ev"]
    print("| workload | server | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 2) + "|")
    for (wname, label), rows in breakdowns.items():
        vals = [statistics.median(r[k] for r in rows) for k in keys]
        text = [
            f"{v:,.0f}" if k == "batches" else f"{v:.2f}" for k, v in zip(keys, vals, strict=True)
        ]
        print(f"| {wname} | {label} | " + " | ".join(text) + " |")
    print("\n| workload | server | " + " | ".join(f"{s} µs/ev" for s in STAGES) + " |")
    print("|---" * (len(STAGES) + 2) + "|")
    for (wname, label), rows in breakdowns.items():
        vals = [statistics.median(r[f"{s} µs/ev"] for r in rows) for s in STAGES]
        print(f"| {wname} | {label} | " + " | ".join(f"{v:.1f}" for v in vals) + " |")
    if args.json:
        data = {f"{w} | {c}": [r.__dict__ for r in rs] for (w, c), rs in table.cells.items()}
        args.json.write_text(json.dumps(data, indent=1))
    if args.plot:
        plot(table, names, cols, args.plot)


def _open_cell(rs: list[Result]) -> str:
    if not rs:
        return "–"
    med = lambda f: statistics.median(f(r) for r in rs)  # noqa: E731
    return (
        f"{med(lambda r: r.rate):,.0f} req/s: p50 {med(lambda r: r.p50_ms):.1f} / p99 "
        f"{med(lambda r: r.p99_ms):.1f} / p99.9 {med(lambda r: r.p999_ms):.1f} ms"
        + (f", {sum(r.bad for r in rs)} bad" if any(r.bad for r in rs) else "")
    )


def plot(table: Table, names: list[str], cols: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [n for n in names if not n.startswith("open loop")]
    fig, axes = plt.subplots(1, len(shown), figsize=(4 * len(shown), 4))
    for ax, name in zip(axes, shown, strict=True):
        labels, meds, lo, hi = [], [], [], []
        for c in cols:
            rs = table.cells.get((name, c))
            if not rs:
                continue
            rates = [r.rate for r in rs]
            m = statistics.median(rates)
            labels.append(c.replace(" (reference)", "\n(ref)").replace(", ", "\n"))
            meds.append(m)
            lo.append(m - min(rates))
            hi.append(max(rates) - m)
        ax.bar(range(len(meds)), meds, yerr=[lo, hi], capsize=3)
        ax.set_xticks(range(len(meds)), labels, fontsize=7)
        ax.set_title(name, fontsize=8, wrap=True)
    fig.suptitle("liquidstream service load (2 cores; medians, min–max bars)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def _subcommand(argv: list[str]) -> int:
    if argv[0] == "ws-client":
        url, sockets, seconds, tag, window = argv[1:6]
        d = asyncio.run(_ws_client(url, int(sockets), float(seconds), tag, int(window)))
        print(json.dumps(d))
        return 0
    if argv[0] == "ws-raw":
        from bench.ws_raw import run as ws_raw

        url, sockets, seconds, tag, window = argv[1:6]
        args = (url, int(sockets), float(seconds), tag, int(window), FEATURES)
        print(json.dumps(asyncio.run(ws_raw(*args))))
        return 0
    url, rate, seconds, tag = argv[1:5]
    r = asyncio.run(_open_loop(url, float(rate), float(seconds), tag))
    print(json.dumps(r.__dict__))
    return 0


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_NOFILE, (8192, 8192))
    if len(sys.argv) > 1 and sys.argv[1] in ("ws-client", "ws-raw", "open-loop"):
        sys.exit(_subcommand(sys.argv[1:]))
    sys.exit(main())
