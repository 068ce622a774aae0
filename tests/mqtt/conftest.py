"""Fixtures of the MQTT tests: a private mosquitto per module, a listener on the answer
topics."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.mqtt.broker import Mosquitto, private_mosquitto
from tests.mqtt.clients import Listener


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    with private_mosquitto(tmp_path_factory.mktemp("mosquitto")) as b:
        yield b


@pytest.fixture
def listener(broker: Mosquitto) -> Iterator[Listener]:
    client = Listener(broker.port, "sensors/+/predictions", "sensors/+/errors")
    yield client
    client.close()
