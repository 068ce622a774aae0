"""``liquid demo --mqtt``: SenML packs the service decodes to the demo's events, and a short
replay through a real mosquitto into a real ``liquid serve --mqtt-url`` (integration)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from service.demo import recordings as rec
from service.demo import replay
from service.demo.mqtt_transport import senml_pack
from service.engine.registry import FeatureSpec
from service.mqtt.payload import decode_events
from service.mqtt.wire import derived_id
from tests.conftest import free_port
from tests.demo.conftest import has_sktime_data
from tests.demo.test_replay import run_demo
from tests.mqtt.broker import Mosquitto, private_mosquitto
from tests.service_process import ServiceProcess, start_service

T = 1_767_225_600.25


def test_a_pack_decodes_to_the_event_with_the_id_the_transport_waits_for() -> None:
    x = [0.5, -1.0, 9.8, 0.01, 0.02, -0.03]
    topic = "sensors/demo-1/events"
    payload = senml_pack("demo-1", T, x, rec.FEATURES)
    # the model's order may differ from the demo's: records are matched by name
    spec = FeatureSpec(6, tuple(reversed(rec.FEATURES)))
    (event,) = decode_events(
        topic, payload, senml_pack=True, spec=spec, units={}, max_bytes=4096, max_events=8,
        now=0.0,
    )  # fmt: skip
    assert event.t == T
    assert list(event.x) == list(reversed(x))
    assert event.id == derived_id(topic, payload, 0)
    named = dict(zip(rec.FEATURES, x, strict=True))
    assert senml_pack("demo-1", T, named, ()) == payload


def test_mqtt_options_are_checked(capsys: pytest.CaptureFixture[str]) -> None:
    replay.Options(mqtt="mqtt://127.0.0.1:1883", ws_streams=0)
    with pytest.raises(ValueError, match="--mqtt: must be mqtt://host"):
        replay.Options(mqtt="http://127.0.0.1:1883", ws_streams=0)
    with pytest.raises(ValueError, match="--ws-streams must be 0 with --mqtt"):
        replay.Options(mqtt="mqtt://127.0.0.1", streams=2, ws_streams=1)
    assert replay.main(["--mqtt", "mqtt://h", "--streams", "2", "--ws-streams", "1"]) == 2
    assert "--ws-streams must be 0 with --mqtt" in capsys.readouterr().err


def test_summary_names_mqtt() -> None:
    views = [replay.StreamView("demo-1", "mqtt"), replay.StreamView("demo-2", "mqtt")]
    stats = replay.Stats()
    stats.latencies_ms["mqtt"] += [2.0, 4.0]
    text = "\n".join(replay.summary(views, stats, 1.0))
    assert "2 streams (0 HTTP, 0 WebSocket, 2 MQTT), 0 events sent" in text
    assert "MQTT p50 3.0 ms p95 3.9 ms (2)" in text


# -- through a broker and a service -----------------------------------------------------------
@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    with private_mosquitto(tmp_path_factory.mktemp("mosquitto")) as b:
        yield b


@pytest.fixture(scope="module")
def mqtt_service(
    broker: Mosquitto, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    service = start_service(["--mqtt-url", broker.url], tmp_path_factory.mktemp("svc"))
    try:
        yield service
    finally:
        service.stop()


@pytest.mark.skipif(not has_sktime_data(), reason="the BasicMotions files come with sktime")
@pytest.mark.integration
def test_demo_replays_over_mqtt(mqtt_service: ServiceProcess, broker: Mosquitto) -> None:
    proc = run_demo(
        "--url", mqtt_service.url, "--mqtt", broker.url, "--streams", "2", "--duration", "3",
        "--speed", "2", "--prefix", "mqtt",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert f"on 2 streams over MQTT ({broker.url})" in out
    m = re.search(r"2 streams \(0 HTTP, 0 WebSocket, 2 MQTT\), (\d+) events sent, (\d+) pred", out)
    assert m, out
    sent, predicted = int(m.group(1)), int(m.group(2))
    assert sent >= 10
    assert predicted == sent, out
    assert re.search(r"latency \(round trip\): MQTT p50 [\d.]+ ms p95 [\d.]+ ms", out), out
    # the MQTT-made predictions reached the streams' live feeds (what the live page shows)
    live = re.search(r"live feed: (\d+) predictions received on 2 subscriptions", out)
    assert live, out
    assert int(live.group(1)) == predicted, out
    assert ", 0 errors" in out
    for stream in ("mqtt-1", "mqtt-2"):
        got = httpx.get(f"{mqtt_service.url}/v1/streams/{stream}", timeout=10)
        assert got.status_code == 200, got.text
        assert got.json()["count"] >= 1


@pytest.mark.skipif(not has_sktime_data(), reason="the BasicMotions files come with sktime")
@pytest.mark.integration
def test_an_unreachable_broker_exits_2(mqtt_service: ServiceProcess) -> None:
    url = f"mqtt://127.0.0.1:{free_port()}"
    proc = run_demo("--url", mqtt_service.url, "--mqtt", url, "--duration", "1", timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"cannot reach the broker at {url}" in proc.stderr
