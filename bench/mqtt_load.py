"""MQTT end to end: events/s and latency from a device's PUBLISH to the prediction arriving on
``sensors/{id}/predictions``, through a real mosquitto and ``liquid serve --mqtt-url``.

    PYTHONPATH=. .venv/bin/python bench/mqtt_load.py [--redis] [--events 4000] [--streams 64]

Everything runs on this machine, started here on free ports: mosquitto (tests/mqtt/broker.py),
the service (one worker; the in-process store, or Redis with ``--redis``), a paho publisher
(QoS 1, ``--inflight`` unacknowledged at most) and a paho subscriber; the clients share one
process with their own network threads.

Two phases after a warm-up:

- **throughput** (closed loop): every event published at once; events/s is the number of
  predictions over the time from the first publish to the last prediction;
- **latency** (open loop): events published at a constant ``--rate-fraction`` of the measured
  throughput; each latency counts from the event's scheduled send time (a stall is not hidden).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

T0 = 1_767_225_600.0
X = [0.5, -1.0, 9.8, 0.01, 0.02, -0.03]


class Clients:
    """A QoS 1 publisher and a subscriber to the predictions, timing each event by id."""

    def __init__(self, port: int, inflight: int) -> None:
        self.sent: dict[str, float] = {}
        self.got: dict[str, float] = {}
        self._cond = threading.Condition()
        self.sub = paho.Client(CallbackAPIVersion.VERSION2, "bench-sub", protocol=paho.MQTTv5)
        self.sub.on_message = self._on_message
        ready = threading.Event()
        self.sub.on_subscribe = lambda *a: ready.set()
        self.sub.connect("127.0.0.1", port)
        self.sub.loop_start()
        self.sub.subscribe("sensors/+/predictions", qos=1)
        ready.wait(10)
        self.pub = paho.Client(CallbackAPIVersion.VERSION2, "bench-pub", protocol=paho.MQTTv5)
        self.pub.max_inflight_messages_set(inflight)
        self.pub.connect("127.0.0.1", port)
        self.pub.loop_start()

    def _on_message(self, client: Any, userdata: Any, msg: paho.MQTTMessage) -> None:
        now = time.perf_counter()
        event_id = json.loads(msg.payload)["id"]
        with self._cond:
            self.got[event_id] = now
            self._cond.notify_all()

    def publish(self, stream: str, k: int, at: float | None = None) -> None:
        event_id = f"{stream}-{k}"
        body = json.dumps({"t": T0 + 0.01 * k, "x": X, "id": event_id})
        self.sent[event_id] = at if at is not None else time.perf_counter()
        self.pub.publish(f"sensors/{stream}/events", body, qos=1)

    def wait(self, ids: list[str], timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: all(i in self.got for i in ids), timeout)

    def close(self) -> None:
        for c in (self.pub, self.sub):
            c.disconnect()
            c.loop_stop()


def run_phase(
    clients: Clients, streams: list[str], start_k: int, per_stream: int, rate: float | None
) -> tuple[list[str], float]:
    """Publish ``per_stream`` events per stream (round robin); ``rate`` events/s or all at
    once. Returns the ids and the wall time of the publishing loop."""
    ids: list[str] = []
    begin = time.perf_counter()
    n = 0
    for k in range(start_k, start_k + per_stream):
        for stream in streams:
            at = None
            if rate:
                at = begin + n / rate
                delay = at - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            clients.publish(stream, k, at)
            ids.append(f"{stream}-{k}")
            n += 1
    return ids, time.perf_counter() - begin


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def histogram_buckets(text: str, name: str) -> list[tuple[float, float]]:
    """``(upper bound, cumulative count)`` of an unlabelled histogram on /metrics."""
    out = []
    for line in text.splitlines():
        if line.startswith(name + '_bucket{le="'):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            out.append((float(bound), float(line.rsplit(" ", 1)[1])))
    return out


def quantiles_between(before: str, after: str, name: str) -> dict[str, float | None]:
    """p50 and p99 (ms; the upper bound of the bucket they fall in) of what a histogram
    observed between two scrapes."""
    old = dict(histogram_buckets(before, name))
    buckets = [(b, c - old.get(b, 0.0)) for b, c in histogram_buckets(after, name)]
    total = buckets[-1][1] if buckets else 0.0
    out: dict[str, float | None] = {}
    for label, q in (("p50", 0.5), ("p99", 0.99)):
        hit = next((b for b, c in buckets if total and c >= q * total), None)
        out[label] = None if hit is None or hit == float("inf") else round(hit * 1000, 2)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=4000, help="events per phase")
    p.add_argument("--streams", type=int, default=64)
    p.add_argument("--inflight", type=int, default=256, help="publisher's unacked QoS 1 max")
    p.add_argument("--receive-maximum", type=int, default=32, help="the service's window")
    p.add_argument(
        "--publish-inflight",
        type=int,
        default=20,
        help="the service's unacknowledged predictions (and the broker's max_inflight_messages)",
    )
    p.add_argument("--rate-fraction", type=float, default=0.5)
    p.add_argument("--redis", action="store_true", help="Redis store instead of in-process")
    p.add_argument("--json", type=Path, help="write the results here too")
    args = p.parse_args(argv)

    from tests.mqtt.broker import Mosquitto
    from tests.redis_process import RedisProcess
    from tests.service_process import start_service

    work = Path(tempfile.mkdtemp(prefix="mqtt-bench-"))
    broker = Mosquitto(work, f"max_inflight_messages {args.publish_inflight}")
    broker.start()
    redis = RedisProcess(work) if args.redis else None
    extra: list[str] = []
    if redis is not None:
        redis.start()
        extra = ["--redis-url", redis.url]
    env = {
        "LIQUID_MQTT_RECEIVE_MAXIMUM": str(args.receive_maximum),
        "LIQUID_MQTT_PUBLISH_INFLIGHT": str(args.publish_inflight),
        "LIQUID_DEDUPE_WINDOW": str(max(32, args.receive_maximum)),
    }
    svc = start_service(["--mqtt-url", broker.url, *extra], work, env=env)
    clients = Clients(broker.port, args.inflight)
    streams = [f"bench-{i}" for i in range(args.streams)]
    per_stream = max(1, args.events // len(streams))
    try:
        warm, _ = run_phase(clients, streams, 0, 5, None)
        if not clients.wait(warm, 60):
            raise SystemExit("warm-up predictions did not arrive")
        ids, _ = run_phase(clients, streams, 5, per_stream, None)
        if not clients.wait(ids, 300):
            raise SystemExit("throughput phase: predictions missing")
        first = min(clients.sent[i] for i in ids)
        last = max(clients.got[i] for i in ids)
        throughput = len(ids) / (last - first)
        rate = throughput * args.rate_fraction
        before = httpx.get(f"{svc.url}/metrics", timeout=10).text
        ids2, _ = run_phase(clients, streams, 5 + per_stream, per_stream, rate)
        if not clients.wait(ids2, 300):
            raise SystemExit("latency phase: predictions missing")
        lat = [(clients.got[i] - clients.sent[i]) * 1000 for i in ids2]
        result = {
            "store": "redis" if redis else "in-process",
            "streams": len(streams),
            "events": len(ids),
            "receive_maximum": args.receive_maximum,
            "publish_inflight": args.publish_inflight,
            "throughput_events_per_s": round(throughput, 1),
            "open_loop_rate_events_per_s": round(rate, 1),
            "latency_ms": {
                "p50": round(statistics.median(lat), 2),
                "p90": round(percentile(lat, 0.90), 2),
                "p99": round(percentile(lat, 0.99), 2),
                "max": round(max(lat), 2),
            },
            "cpus": len(os.sched_getaffinity(0)),
        }
        after = httpx.get(f"{svc.url}/metrics", timeout=10).text
        # the open-loop phase as the service saw it (bucket bounds, not exact quantiles)
        result["open_loop_service_side_ms"] = {
            name: quantiles_between(before, after, f"liquid_{name}_seconds")
            for name in ("mqtt_message", "mqtt_publish", "queue_wait", "batch_compute")
        }
    finally:
        clients.close()
        svc.stop()
        broker.stop()
        if redis is not None:
            redis.stop()
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
