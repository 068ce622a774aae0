"""Two replicas, static sharding (--mqtt-shard 0/2 and 1/2) on one broker and one Redis: each
stream is applied by one replica, in order; no event is refused as out of order because of
the split, none is applied twice, and both replicas take a share."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.mqtt.shard import Shard
from tests.mqtt.broker import Mosquitto
from tests.mqtt.clients import DevicePublisher, Listener
from tests.service_process import ServiceProcess, start_service

pytestmark = [pytest.mark.integration, pytest.mark.slow]

T0 = 1_767_225_600.0
STREAMS = [f"shard-{i}" for i in range(8)]
PER_STREAM = 25
X = [0.5, -1.0, 9.8, 0.01, 0.02, -0.03]


@pytest.fixture
def replicas(
    broker: Mosquitto, redis_server: str, tmp_path: Path
) -> Iterator[list[ServiceProcess]]:
    started: list[ServiceProcess] = []
    try:
        for shard in ("0/2", "1/2"):
            args = ["--mqtt-url", broker.url, "--redis-url", redis_server, "--mqtt-shard", shard]
            started.append(start_service(args, tmp_path))
        yield started
    finally:
        for svc in started:
            svc.stop()


def _metric(svc: ServiceProcess, outcome: str) -> float:
    text = httpx.get(f"{svc.url}/metrics", timeout=10).text
    prefix = f'liquid_mqtt_messages_received_total{{outcome="{outcome}"}} '
    return sum(
        float(line.removeprefix(prefix)) for line in text.splitlines() if line.startswith(prefix)
    )


def test_two_sharded_replicas_keep_each_streams_order(
    broker: Mosquitto, listener: Listener, replicas: list[ServiceProcess]
) -> None:
    owners = {s: [Shard(k, 2).owns("default", s) for k in (0, 1)].index(True) for s in STREAMS}
    assert set(owners.values()) == {0, 1}, "the test streams should land on both shards"
    device = DevicePublisher(broker.port, client_id="shard-device")
    try:
        for k in range(PER_STREAM):  # interleaved, back to back: both replicas busy at once
            for stream in STREAMS:
                device.publish(
                    f"sensors/{stream}/events", {"t": T0 + 0.1 * k, "x": X, "id": f"{stream}-{k}"}
                )
        device.wait_all_acknowledged()
    finally:
        device.close()
    total = len(STREAMS) * PER_STREAM
    got = listener.wait(lambda ms: len(ms) >= total, timeout=60)
    assert [m.body for m in got if m.topic.endswith("/errors")] == []
    for stream in STREAMS:
        counts = [m.body["count"] for m in got if m.topic == f"sensors/{stream}/predictions"]
        assert counts == list(range(1, PER_STREAM + 1)), stream  # in order, once each
    for svc in replicas:  # the state is shared: either replica answers for every stream
        for stream in STREAMS:
            info = httpx.get(f"{svc.url}/v1/streams/{stream}", timeout=10).json()
            assert info["count"] == PER_STREAM
    time.sleep(0.2)  # the last acknowledgements are counted after their publishes
    applied = [_metric(svc, "applied") for svc in replicas]
    skipped = [_metric(svc, "other_shard") for svc in replicas]
    mine = [sum(PER_STREAM for s in STREAMS if owners[s] == k) for k in (0, 1)]
    assert applied == mine
    assert skipped == [total - n for n in mine]
