"""Events over MQTT against a real mosquitto and a real service process: the HTTP event JSON
and SenML packs in, predictions out, streams shared with HTTP; bad payloads answered on the
error topic with the HTTP codes, state untouched; a message delivered twice applied once."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from liquidcore.numerics import replay_mismatch
from tests.mqtt.broker import Mosquitto
from tests.mqtt.clients import SENML, DevicePublisher, Listener, Received
from tests.service_process import ServiceProcess, start_service

pytestmark = pytest.mark.integration

T0 = 1_767_225_600.0
NAMES = ("acc_x", "acc_y", "acc_z", "gyr_x", "gyr_y", "gyr_z")  # the demo model's features
X = [0.5, -1.0, 9.8, 0.01, 0.02, -0.03]


@pytest.fixture(scope="module")
def service(
    broker: Mosquitto, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    svc = start_service(["--mqtt-url", broker.url], tmp_path_factory.mktemp("svc"))
    yield svc
    svc.stop()


@pytest.fixture
def device(broker: Mosquitto) -> Iterator[DevicePublisher]:
    pub = DevicePublisher(broker.port, client_id="roundtrip-device")
    yield pub
    pub.close()


def _answers(listener: Listener, stream: str, n: int) -> list[Any]:
    topics = (f"sensors/{stream}/predictions", f"sensors/{stream}/errors")
    got = listener.wait(lambda ms: sum(m.topic in topics for m in ms) >= n)
    return [m for m in got if m.topic in topics]


def _stream(service: ServiceProcess, stream: str) -> httpx.Response:
    return httpx.get(f"{service.url}/v1/streams/{stream}", timeout=10)


def test_mosquitto_pub_of_a_json_event_yields_a_prediction_visible_over_http(
    service: ServiceProcess, broker: Mosquitto
) -> None:
    sub_exe, pub_exe = shutil.which("mosquitto_sub"), shutil.which("mosquitto_pub")
    if sub_exe is None or pub_exe is None:
        pytest.fail("mosquitto-clients is not installed; `make install-system` installs it")
    port = str(broker.port)
    common = ["-h", "127.0.0.1", "-p", port, "-V", "mqttv5", "-q", "1"]
    sub = subprocess.Popen(
        [sub_exe, *common, "-C", "1", "-W", "30", "-t", "sensors/cli-1/predictions"],
        stdout=subprocess.PIPE,
    )
    try:
        # mosquitto_sub is subscribed once its session exists on the broker; a retained-free
        # topic needs the subscription first, so publish until the answer comes.
        event = json.dumps({"t": T0, "x": X, "id": "cli-e1"})
        for _ in range(50):
            subprocess.run(
                [pub_exe, *common, "-t", "sensors/cli-1/events", "-m", event], check=True
            )
            try:
                out, _ = sub.communicate(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                continue
        else:
            raise AssertionError("no prediction on sensors/cli-1/predictions")
    finally:
        sub.kill()
        sub.wait()
    prediction = json.loads(out)
    assert prediction["stream_id"] == "cli-1"
    assert prediction["id"] == "cli-e1"
    assert set(prediction["outputs"]) == {"standing", "walking", "running", "badminton"}
    info = _stream(service, "cli-1")
    assert info.status_code == 200
    assert info.json()["count"] == 1  # the retries until the subscription was up: duplicates


@pytest.mark.parametrize("route", ["content-type", "topic-suffix"])
def test_a_senml_pack_is_the_same_events_as_json(
    service: ServiceProcess, listener: Listener, device: DevicePublisher, route: str
) -> None:
    xs = [X, [v * 0.5 for v in X]]
    # The same two events as the HTTP event JSON on one stream and as SenML on another.
    json_stream, senml_stream = f"json-{route}", f"senml-{route}"
    device.publish(
        f"sensors/{json_stream}/events",
        [{"t": T0 + i, "x": dict(zip(NAMES, x, strict=True))} for i, x in enumerate(xs)],
    )
    pack: list[dict[str, Any]] = [{"bn": f"urn:dev:mac:{route}:", "bt": T0, "bu": "m/s2"}]
    for i, x in enumerate(xs):
        pack += [{"n": n, "v": v, "t": float(i)} for n, v in zip(NAMES, x, strict=True)]
    if route == "content-type":
        device.publish(f"sensors/{senml_stream}/events", pack, content_type=SENML)
    else:
        device.publish(f"sensors/{senml_stream}/events/senml", pack)
    by_json = [m.body for m in _answers(listener, json_stream, 2)]
    by_senml = [m.body for m in _answers(listener, senml_stream, 2)]
    assert [p["t"] for p in by_senml] == [T0, T0 + 1]
    assert [p["count"] for p in by_senml] == [1, 2]
    outputs = [[list(p["outputs"].values()) for p in ps] for ps in (by_senml, by_json)]
    assert replay_mismatch(outputs[0], outputs[1], steps=2) is None
    assert _stream(service, senml_stream).json()["count"] == 2


BAD: list[tuple[str, str, bytes, str | None, str]] = [
    # (case, topic suffix, payload, content type, the HTTP route's code)
    ("not-json", "", b"{nope", None, "invalid_json"),
    ("empty", "", b"", None, "invalid_json"),
    (
        "few-features",
        "",
        json.dumps({"t": T0 + 5, "x": [1.0, 2.0]}).encode(),
        None,
        "wrong_feature_count",
    ),
    (
        "missing-feature",
        "",
        json.dumps({"t": T0 + 5, "x": {"acc_x": 1.0}}).encode(),
        None,
        "missing_feature",
    ),
    ("nan", "", b'{"t": 1767225605, "x": [NaN, 0, 0, 0, 0, 0]}', None, "non_finite_value"),
    ("bad-time", "", json.dumps({"t": "yesterday", "x": X}).encode(), None, "invalid_timestamp"),
    (
        "one-bad-of-two",
        "",
        json.dumps([{"t": T0 + 5, "x": X}, {"t": T0 + 6, "x": [1]}]).encode(),
        None,
        "wrong_feature_count",
    ),
    (
        "media-type",
        "",
        json.dumps({"t": T0 + 5, "x": X}).encode(),
        "text/plain",
        "unsupported_media_type",
    ),
    (
        "senml-unknown",
        "/senml",
        json.dumps([{"n": "temp", "v": 21.5, "t": T0 + 5}]).encode(),
        None,
        "unknown_feature",
    ),
    (
        "senml-missing",
        "/senml",
        json.dumps([{"n": "acc_x", "v": 1.0, "t": T0 + 5}]).encode(),
        None,
        "missing_feature",
    ),
    (
        "senml-string",
        "/senml",
        json.dumps([{"n": "acc_x", "vs": "hi", "t": T0 + 5}]).encode(),
        None,
        "invalid_event",
    ),
    ("senml-object", "/senml", json.dumps({"n": "acc_x", "v": 1}).encode(), None, "invalid_event"),
    ("out-of-order", "", json.dumps({"t": T0 - 60, "x": X}).encode(), None, "out_of_order"),
]


@pytest.mark.parametrize(
    ("suffix", "payload", "content_type", "code"), [c[1:] for c in BAD], ids=[c[0] for c in BAD]
)
def test_a_bad_message_is_answered_on_the_error_topic_and_changes_nothing(
    service: ServiceProcess,
    listener: Listener,
    device: DevicePublisher,
    suffix: str,
    payload: bytes,
    content_type: str | None,
    code: str,
) -> None:
    stream = f"bad-{code}-{len(payload)}-{suffix.strip('/')}"
    device.publish(f"sensors/{stream}/events", {"t": T0, "x": X, "id": "good"})
    _answers(listener, stream, 1)
    before = httpx.get(f"{service.url}/v1/streams/{stream}/state", timeout=10).json()
    device.publish(f"sensors/{stream}/events{suffix}", payload, content_type=content_type)
    answer = _answers(listener, stream, 2)[-1]
    assert answer.topic == f"sensors/{stream}/errors"
    assert answer.body["error"]["code"] == code, answer.body
    after = httpx.get(f"{service.url}/v1/streams/{stream}/state", timeout=10).json()
    assert after == before


def test_an_invalid_stream_id_is_answered_on_its_error_topic(
    service: ServiceProcess, listener: Listener, device: DevicePublisher
) -> None:
    device.publish("sensors/-lead/events", {"t": T0, "x": X})
    (answer,) = _answers(listener, "-lead", 1)
    assert answer == Received("sensors/-lead/errors", answer.body)
    assert answer.body["error"]["code"] == "invalid_stream_id"


@pytest.mark.parametrize("with_id", [True, False], ids=["payload-id", "derived-id"])
def test_a_message_delivered_twice_is_applied_once(
    service: ServiceProcess, listener: Listener, device: DevicePublisher, with_id: bool
) -> None:
    stream = f"twice-{with_id}"
    event: dict[str, Any] = {"t": T0, "x": X} | ({"id": "e-1"} if with_id else {})
    device.publish(f"sensors/{stream}/events", event)
    device.publish(f"sensors/{stream}/events", event)  # what a redelivery looks like
    first, second = (m.body for m in _answers(listener, stream, 2))
    assert (first["duplicate"], second["duplicate"]) == (False, True)
    assert second["outputs"] == first["outputs"]
    assert second["id"] == first["id"]
    assert first["id"] == "e-1" if with_id else first["id"].startswith("mqtt:")
    assert _stream(service, stream).json()["count"] == 1


def test_readiness_and_metrics_show_the_broker(service: ServiceProcess) -> None:
    ready = httpx.get(f"{service.url}/readyz", timeout=10).json()
    assert ready["checks"]["mqtt"] is True
    text = httpx.get(f"{service.url}/metrics", timeout=10).text
    assert "liquid_mqtt_connected 1.0" in text
    applied = [
        line
        for line in text.splitlines()
        if line.startswith('liquid_mqtt_messages_received_total{outcome="applied"}')
    ]
    assert applied
    assert float(applied[0].split()[-1]) >= 1


def test_the_live_websocket_shows_predictions_made_over_mqtt(
    service: ServiceProcess, device: DevicePublisher
) -> None:
    ws_url = service.url.replace("http://", "ws://") + "/v1/streams/ws-1/live"
    with connect(ws_url, open_timeout=10) as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "subscribed"
        device.publish("sensors/ws-1/events", {"t": T0, "x": X, "id": "ws-e1"})
        message = json.loads(ws.recv(timeout=20))
    assert message["type"] == "prediction"
    assert (message["prediction"]["stream_id"], message["prediction"]["id"]) == ("ws-1", "ws-e1")


def test_readiness_follows_the_broker_connection(
    service: ServiceProcess, broker: Mosquitto
) -> None:
    def mqtt_ready() -> tuple[int, bool]:
        r = httpx.get(f"{service.url}/readyz", timeout=10)
        return r.status_code, r.json()["checks"]["mqtt"]

    broker.stop()
    try:
        deadline = time.monotonic() + 20
        while mqtt_ready() != (503, False):
            assert time.monotonic() < deadline, "still ready without a broker"
            time.sleep(0.1)
    finally:
        broker.start()
    deadline = time.monotonic() + 30
    while mqtt_ready() != (200, True):
        assert time.monotonic() < deadline, "not ready again after the broker came back"
        time.sleep(0.1)
