"""The compose file's MQTT profile, checked statically (as tests/deploy does): mosquitto with
its config from deploy/ and persistence on a volume, the MQTT replica wired to it and to the
shared Redis with valid settings, both only under the `mqtt` profile; and the config file is
one real mosquitto accepts."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from service.settings import Settings
from tests.conftest import free_port, stop_process, wait_for_port
from tests.deploy.support import COMPOSE_FILES, REPO, interpolate, load_yaml
from tests.mqtt.broker import mosquitto_exe

pytestmark = pytest.mark.integration

ENV = {"LIQUID_API_KEYS": "0123456789abcdef:demo"}
CONF = REPO / "deploy" / "mosquitto" / "mosquitto.conf"


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    compose: dict[str, Any] = interpolate(load_yaml(COMPOSE_FILES[0]), ENV)
    return compose["services"]


def _directives(text: str) -> dict[str, str]:
    pairs = (line.split(None, 1) for line in text.splitlines() if line.strip())
    return {p[0]: p[1] if len(p) > 1 else "" for p in pairs if not p[0].startswith("#")}


def test_mosquitto_persists_sessions_under_the_mqtt_profile(services: dict[str, Any]) -> None:
    broker = services["mosquitto"]
    assert broker["profiles"] == ["mqtt"]
    assert f"./{CONF.relative_to(REPO)}:/mosquitto/config/mosquitto.conf:ro" in broker["volumes"]
    assert "mosquitto-data:/mosquitto/data" in broker["volumes"]
    assert broker["ports"] == ["127.0.0.1:1883:1883"], "published on loopback by default"
    conf = _directives(CONF.read_text())
    assert conf["persistence"] == "true"
    assert conf["persistence_location"] == "/mosquitto/data/"


def test_the_mqtt_replica_is_wired_to_the_broker_and_the_shared_redis(
    services: dict[str, Any],
) -> None:
    replica = services["liquid-mqtt"]
    assert replica["profiles"] == ["mqtt"]
    assert replica["depends_on"]["mosquitto"]["condition"] == "service_healthy"
    env = replica["environment"]
    assert env["LIQUID_REDIS_URL"] == services["liquid"]["environment"]["LIQUID_REDIS_URL"]
    fields = {k.removeprefix("LIQUID_").lower(): v for k, v in env.items()}
    assert set(fields) <= set(Settings.model_fields)
    config = Settings(**fields, host="0.0.0.0").mqtt_config()
    assert config is not None
    assert (config.host, config.port) == ("mosquitto", 1883)
    assert "replicas" not in replica.get("deploy", {}), "one MQTT session per replica"
    assert "ports" not in replica


def test_a_real_mosquitto_accepts_the_config(tmp_path: Path) -> None:
    port = free_port()
    text = CONF.read_text().replace("/mosquitto/data/", f"{tmp_path}/")
    text = text.replace("listener 1883", f"listener {port} 127.0.0.1")
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(text + "user root\n")
    proc = subprocess.Popen(
        [mosquitto_exe(), "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    try:
        wait_for_port(port)
        assert proc.poll() is None
    finally:
        stop_process(proc)
