"""MQTT clients of the tests (paho-mqtt, MQTT 5, its network loop on a thread): a listener
that collects what the service publishes, and a device-like publisher with a persistent
session that retries QoS 1 messages across broker restarts."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

SENML = "application/senml+json"


@dataclass(frozen=True)
class Received:
    topic: str
    body: Any


def _client(client_id: str) -> paho.Client:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    client.reconnect_delay_set(min_delay=0.1, max_delay=0.5)
    return client


def _connect(client: paho.Client, port: int, *, persistent: bool) -> None:
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600 if persistent else 0
    client.connect("127.0.0.1", port, keepalive=10, clean_start=not persistent, properties=props)


class Listener:
    """Subscribes to ``topics`` and keeps every message (JSON bodies decoded)."""

    def __init__(self, port: int, *topics: str, client_id: str = "test-listener") -> None:
        self.messages: list[Received] = []
        self._cond = threading.Condition()
        subscribed = threading.Event()
        self._client = _client(client_id)
        self._client.on_message = self._on_message
        # (Re)subscribe on every connect: a broker restart may lose a session.
        self._client.on_connect = lambda c, *a: c.subscribe([(t, 1) for t in topics])
        self._client.on_subscribe = lambda *a: subscribed.set()
        _connect(self._client, port, persistent=True)
        self._client.loop_start()
        if not subscribed.wait(10):
            raise RuntimeError("the listener did not get its SUBACK")

    def _on_message(self, client: Any, userdata: Any, msg: paho.MQTTMessage) -> None:
        with self._cond:
            self.messages.append(Received(msg.topic, json.loads(msg.payload)))
            self._cond.notify_all()

    def wait(self, done: Callable[[list[Received]], bool], timeout: float = 20.0) -> list[Received]:
        with self._cond:
            if not self._cond.wait_for(lambda: done(self.messages), timeout):
                raise AssertionError(
                    f"timed out; received {len(self.messages)}: {self.messages[-5:]}"
                )
            return list(self.messages)

    def on(self, topic: str) -> list[Any]:
        with self._cond:
            return [m.body for m in self.messages if m.topic == topic]

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


class DevicePublisher:
    """QoS 1 with a persistent session: paho retransmits what the broker has not acknowledged
    after a reconnect and queues what is published while disconnected."""

    def __init__(self, port: int, client_id: str = "test-device") -> None:
        self._client = _client(client_id)
        self._client.max_inflight_messages_set(20)
        self._cond = threading.Condition()
        self._sent: list[int] = []  # mids of the publishes, in order
        self._acked: set[int] = set()
        self._client.on_publish = self._on_publish
        _connect(self._client, port, persistent=True)
        self._client.loop_start()

    def _on_publish(self, client: Any, userdata: Any, mid: int, *args: Any) -> None:
        with self._cond:
            self._acked.add(mid)
            self._cond.notify_all()

    def publish(self, topic: str, body: Any, content_type: str | None = None) -> None:
        props = None
        if content_type is not None:
            props = Properties(PacketTypes.PUBLISH)
            props.ContentType = content_type
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        # While disconnected paho keeps a QoS 1 message and sends it after the reconnect.
        info = self._client.publish(topic, payload, qos=1, properties=props)
        with self._cond:
            self._sent.append(info.mid)

    def wait_all_acknowledged(self, timeout: float = 30.0) -> None:
        """Until the broker acknowledged every publish (mids are unique below 65536 sends)."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._acked >= set(self._sent), timeout):
                missing = len(set(self._sent) - self._acked)
                raise AssertionError(f"{missing} publishes not acknowledged by the broker")

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
