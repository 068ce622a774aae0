"""Several service processes on one Redis: shared streams, a live feed across processes, a
process killed mid-stream, and /metrics merged across uvicorn workers. Real ``liquid serve``
subprocesses on free ports."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from websockets.sync.client import connect

from tests.conftest import free_port
from tests.service_api.conftest import (
    assert_close,
    load,
    metric_value,
    offline_outputs,
    outputs_list,
)
from tests.service_api.test_routes import MIXED_BATCH_TOL, random_events

pytestmark = [pytest.mark.integration, pytest.mark.slow]

T0 = 1_714_564_800.0


def post(client: httpx.Client, base: str, stream: str, t: float, x: list[float], **kw: Any) -> Any:
    r = client.post(f"{base}/v1/streams/{stream}/events", json={"t": t, "x": x, **kw})
    assert r.status_code in (200, 409), r.text
    return r.json()


def offline_state(model: Any, events: list[tuple[float, list[float]]]) -> list[float]:
    h = model.init_state(1)
    last = None
    with torch.no_grad():
        for t, x in events:
            dt = model.default_dt if last is None else t - last
            _, h = model.step(torch.tensor([x]), torch.tensor([dt], dtype=torch.float64).float(), h)
            last = t
    return [float(v) for v in h[0]]


def test_two_processes_share_streams_and_live_feeds(
    services: Any, redis_url: str, artifacts: dict[str, Path]
) -> None:
    args = ["--model", str(artifacts["pump"]), "--redis-url", redis_url]
    with ThreadPoolExecutor(2) as pool:  # start both at once
        a, b = pool.map(lambda _: services(args), range(2))
    model = load(artifacts["pump"])
    streams = {f"s{k}": random_events(16, seed=40 + k, t0=T0 + k) for k in range(3)}

    with connect(f"ws://127.0.0.1:{b.port}/v1/streams/s0/live", open_timeout=10) as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "subscribed"

        def run(stream: str) -> list[list[float]]:
            # events of one stream in order, alternating between the two processes
            out = []
            with httpx.Client(timeout=30) as c:
                for i, (t, x) in enumerate(streams[stream]):
                    base = (a, b)[i % 2].url
                    p = post(c, base, stream, t, x, id=f"{stream}-{i}")
                    out.append(outputs_list(p))
            return out

        with ThreadPoolExecutor(3) as pool:
            results = dict(zip(streams, pool.map(run, streams), strict=True))
        # every prediction of s0, whichever process made it, reached B's subscriber. Each
        # process publishes in order, but two processes' messages may interleave (a process
        # publishes just after it answers): `count` orders them.
        live = [json.loads(ws.recv(timeout=10))["prediction"] for _ in range(16)]
    live.sort(key=lambda p: p["count"])
    assert [p["id"] for p in live] == [f"s0-{i}" for i in range(16)]
    assert_close([outputs_list(p) for p in live], results["s0"], tol=0)

    for stream, events in streams.items():
        assert_close(results[stream], offline_outputs(model, events), tol=MIXED_BATCH_TOL)
        with httpx.Client() as c:
            sa = c.get(f"{a.url}/v1/streams/{stream}/state").json()
            sb = c.get(f"{b.url}/v1/streams/{stream}/state").json()
        assert sa == sb
        assert sa["count"] == 16
        assert_close([sa["h"]], [offline_state(model, events)], tol=MIXED_BATCH_TOL)

    # concurrent writers on one stream: nothing lost, nothing applied twice
    rng = random.Random(7)
    events = [
        (T0 + 100 + i * 0.5, [rng.gauss(20, 5), rng.gauss(0, 1), rng.gauss(1000, 300)])
        for i in range(40)
    ]

    def send(i: int) -> tuple[int, Any]:
        with httpx.Client(timeout=30) as c:
            t, x = events[i]
            return i, post(c, (a, b)[i % 2].url, "hot", t, x, id=f"hot-{i}")

    order = list(range(40))
    rng.shuffle(order)
    with ThreadPoolExecutor(8) as pool:
        answers = dict(pool.map(send, order))
    applied = sorted(i for i, p in answers.items() if "error" not in p)
    assert applied
    assert all(answers[i]["error"]["code"] == "out_of_order" for i in set(range(40)) - set(applied))
    accepted = [events[i] for i in applied]
    want = offline_outputs(model, accepted)
    assert_close([outputs_list(answers[i]) for i in applied], want, tol=MIXED_BATCH_TOL)
    with httpx.Client() as c:
        final = c.get(f"{a.url}/v1/streams/hot/state").json()
        assert final["count"] == len(applied)
        metrics = c.get(f"{a.url}/metrics").text + c.get(f"{b.url}/metrics").text
    assert_close([final["h"]], [offline_state(model, accepted)], tol=MIXED_BATCH_TOL)
    assert metric_value(metrics, "liquid_events_total", {"outcome": "out_of_order"}) == 40 - len(
        applied
    )


def test_a_killed_process_loses_no_acknowledged_event(
    services: Any, redis_url: str, artifacts: dict[str, Path]
) -> None:
    port = free_port()
    args = ["--model", str(artifacts["pump"]), "--redis-url", redis_url]
    svc = services(args, port=port)
    model = load(artifacts["pump"])
    events = random_events(40, seed=99)
    answers: dict[int, Any] = {}
    failed_at: list[int] = []
    twelve_acked = threading.Event()

    def producer() -> None:
        with httpx.Client(timeout=5) as c:
            for i, (t, x) in enumerate(events):
                try:
                    answers[i] = post(c, svc.url, "k", t, x, id=f"k-{i}")
                except httpx.HTTPError:
                    failed_at.append(i)
                    return
                if i == 12:
                    twelve_acked.set()

    thread = threading.Thread(target=producer)
    thread.start()
    assert twelve_acked.wait(30)
    svc.kill(signal.SIGKILL)  # mid-stream: the producer is sending
    thread.join(30)
    acked = len(answers)
    assert failed_at
    assert failed_at[0] == acked < len(events)

    svc2 = services(args, port=port)  # a new process, same Redis
    with httpx.Client(timeout=30) as c:
        info = c.get(f"{svc2.url}/v1/streams/k").json()
        # every acknowledged event is in the state; the one in flight may or may not be
        assert info["count"] in (acked, acked + 1)
        # the client retries from the first unacknowledged event, with the same ids
        for i in range(acked, len(events)):
            t, x = events[i]
            answers[i] = post(c, svc2.url, "k", t, x, id=f"k-{i}")
        final = c.get(f"{svc2.url}/v1/streams/k/state").json()
    assert answers[acked]["duplicate"] is (info["count"] == acked + 1)
    assert all(not answers[i]["duplicate"] for i in range(acked + 1, len(events)))
    assert final["count"] == len(events)
    got = [outputs_list(answers[i]) for i in range(len(events))]
    assert_close(got, offline_outputs(model, events), tol=1e-6)
    assert_close([final["h"]], [offline_state(model, events)], tol=1e-6)


def _model_info_pids(text: str) -> set[str]:
    return set(re.findall(r'liquid_model_info\{[^}]*pid="(\d+)"', text))


def _wait(check: Any, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("condition not met in time")


def test_metrics_are_merged_across_workers(
    services: Any, redis_url: str, artifacts: dict[str, Path]
) -> None:
    svc = services(["--workers", "2", "--model", str(artifacts["pump"]), "--redis-url", redis_url])
    with httpx.Client(timeout=30) as c:
        pids = _wait(
            lambda: (p := _model_info_pids(c.get(f"{svc.url}/metrics").text)) and len(p) == 2 and p
        )
    for pid in pids:
        assert Path(f"/proc/{pid}").exists()
    n = 30
    for i in range(n):  # a fresh connection each time, so both workers get some
        with httpx.Client(timeout=30) as c:
            r = c.post(f"{svc.url}/v1/streams/w{i % 3}/events", json={"t": T0 + i, "x": [1, 2, 3]})
            assert r.status_code == 200
    with httpx.Client(timeout=30) as c:
        text = c.get(f"{svc.url}/metrics").text
    route = {"route": "/v1/streams/{stream_id}/events", "status": "200"}
    assert metric_value(text, "liquid_http_requests_total", route) == n
    assert metric_value(text, "liquid_events_total", {"outcome": "applied"}) == n
    assert metric_value(text, "liquid_batch_size_sum") == n
    assert metric_value(text, "liquid_model_info") == 2  # one per live worker

    # a worker dies: uvicorn's supervisor (ours) marks it dead, so its live gauges leave
    # /metrics at once (a replacement is started meanwhile)
    victim = sorted(pids)[0]
    os.kill(int(victim), signal.SIGKILL)
    with httpx.Client(timeout=30) as c:
        now = _wait(
            lambda: (
                (p := _model_info_pids(c.get(f"{svc.url}/metrics").text)) and victim not in p and p
            )
        )
        text = c.get(f"{svc.url}/metrics").text
    assert victim not in now
    assert metric_value(text, "liquid_http_requests_total", route) == n  # counters survive
