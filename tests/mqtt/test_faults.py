"""Nothing acknowledged is lost, nothing is applied twice: a device publishes QoS 1 events
(retrying over reconnects, as paho does) while the broker restarts and the service is killed
with SIGKILL and started again. Every published event must be applied exactly once, in order:
each stream's count equals what was published and its state equals the offline replay of
exactly those events (tolerance per liquidcore/numerics.py)."""

from __future__ import annotations

import concurrent.futures
import random
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from liquidcore.checkpoint import load_model
from liquidcore.numerics import replay_mismatch
from service.settings import DEMO_MODEL_DIR
from tests.chaos.load import PlannedEvent
from tests.chaos.oracle import replay
from tests.mqtt.broker import Mosquitto
from tests.mqtt.clients import DevicePublisher, Listener
from tests.service_process import ServiceProcess, start_service

pytestmark = [pytest.mark.integration, pytest.mark.slow]

T0 = 1_767_225_600.0
STREAMS = 4
PER_STREAM = 45
SETTLE_S = 60.0


def plan(seed: int = 7) -> dict[str, list[PlannedEvent]]:
    """Per stream, events at irregular times with ids (the oracle's input)."""
    rng = random.Random(seed)
    out: dict[str, list[PlannedEvent]] = {}
    for s in range(STREAMS):
        t = T0
        events = []
        for k in range(PER_STREAM):
            t += rng.uniform(0.05, 0.5)
            x = tuple(rng.uniform(-3, 3) for _ in range(6))
            events.append(PlannedEvent(f"kill-{s}", f"kill-{s}-{k}", t, x))
        out[f"kill-{s}"] = events
    return out


@pytest.fixture
def start(broker: Mosquitto, redis_server: str, tmp_path: Path) -> Iterator[list[ServiceProcess]]:
    started: list[ServiceProcess] = []
    yield started
    for svc in started:
        svc.stop()


def _start(
    broker: Mosquitto, redis: str, tmp: Path, started: list[ServiceProcess]
) -> ServiceProcess:
    svc = start_service(["--mqtt-url", broker.url, "--redis-url", redis], tmp)
    started.append(svc)
    return svc


def _counts(svc: ServiceProcess, streams: list[str]) -> dict[str, int]:
    counts = {}
    for stream in streams:
        r = httpx.get(f"{svc.url}/v1/streams/{stream}", timeout=10)
        counts[stream] = r.json()["count"] if r.status_code == 200 else 0
    return counts


def test_broker_restart_and_service_sigkill_lose_nothing_and_double_nothing(
    broker: Mosquitto,
    redis_server: str,
    tmp_path: Path,
    listener: Listener,
    start: list[ServiceProcess],
) -> None:
    events = plan()
    streams = sorted(events)
    order = [e for k in range(PER_STREAM) for s in streams for e in [events[s][k]]]
    svc = _start(broker, redis_server, tmp_path, start)
    device = DevicePublisher(broker.port, client_id="fault-device")
    restart_broker_at, kill_service_at = len(order) // 3, 2 * len(order) // 3
    pool = concurrent.futures.ThreadPoolExecutor(1)
    restarted = None
    try:
        for i, e in enumerate(order):
            if i == restart_broker_at:
                broker.restart()  # the device and the service reconnect; sessions persisted
            if i == kill_service_at:
                svc.kill()  # SIGKILL: whatever was not acknowledged is redelivered
                restarted = pool.submit(_start, broker, redis_server, tmp_path, start)
            device.publish(f"sensors/{e.stream_id}/events", e.body())
            time.sleep(0.01)
        assert restarted is not None
        svc = restarted.result(timeout=120)
        device.wait_all_acknowledged()
    finally:
        device.close()
        pool.shutdown()
    deadline = time.monotonic() + SETTLE_S
    while (counts := _counts(svc, streams)) != dict.fromkeys(streams, PER_STREAM):
        assert all(c <= PER_STREAM for c in counts.values()), f"doubled: {counts}"
        assert time.monotonic() < deadline, (
            f"not all applied: {counts}\n{svc.log.read_text()[-3000:]}"
        )
        time.sleep(0.2)
    model = load_model(DEMO_MODEL_DIR)
    for stream in streams:
        state = httpx.get(f"{svc.url}/v1/streams/{stream}/state", timeout=10).json()
        _, h_ref = replay(model, events[stream])
        assert replay_mismatch([state["h"]], [h_ref.tolist()], steps=PER_STREAM) is None
        assert state["last_t"] == events[stream][-1].t
        assert [r["id"] for r in state["recent"]] == [e.id for e in events[stream][-32:]]
    # A redelivery inside the dedupe window is a duplicate, never an error.
    errors = [m.body for m in listener.messages if m.topic.endswith("/errors")]
    assert errors == []
    assert np.isfinite(state["h"]).all()


def test_an_event_waits_unacknowledged_while_the_store_is_down(
    broker: Mosquitto, tmp_path: Path, listener: Listener, start: list[ServiceProcess]
) -> None:
    from tests.redis_process import RedisProcess

    redis = RedisProcess(tmp_path)
    redis.start()
    try:
        svc = _start(broker, redis.url, tmp_path, start)
        device = DevicePublisher(broker.port, client_id="store-down-device")
        try:
            redis.stop()
            device.publish("sensors/store-down/events", {"t": T0, "x": [0.1] * 6, "id": "s1"})
            device.wait_all_acknowledged()  # by the broker: the event is in the service's hands
            time.sleep(1.0)
            metrics = httpx.get(f"{svc.url}/metrics", timeout=10).text
            assert "liquid_mqtt_in_flight 1.0" in metrics  # taken, not acknowledged
            assert listener.messages == []
            redis.start()  # same port: the service's retry reaches it
            (answer,) = listener.wait(lambda ms: len(ms) >= 1, timeout=30)
        finally:
            device.close()
        assert answer.topic == "sensors/store-down/predictions"
        assert (answer.body["id"], answer.body["count"]) == ("s1", 1)
        deadline = time.monotonic() + 10
        while "liquid_mqtt_in_flight 0.0" not in httpx.get(f"{svc.url}/metrics", timeout=10).text:
            assert time.monotonic() < deadline, "the event was never acknowledged"
            time.sleep(0.1)
    finally:
        redis.stop()
