"""Answers published back to the broker: predictions and per-message errors.

Payloads are the HTTP API's: the prediction object of ``POST /v1/streams/{id}/events`` and the
error body ``{"error": {"code", "message", "details"}}``, encoded by the API's JSON encoder.
"""

from __future__ import annotations

import time
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from service.engine.encode import dumps
from service.mqtt.metrics import MqttMetrics
from service.mqtt.topics import TopicTemplate

CONTENT_TYPE = "application/json"


def encode(body: Any) -> bytes:
    """The API's JSON bytes of ``body`` (the one encoder of HTTP, WebSocket and MQTT)."""
    return dumps(body)


class Publisher:
    """Publishes on one connection; a publish that fails raises ``aiomqtt.MqttError``."""

    def __init__(
        self,
        client: aiomqtt.Client,
        *,
        predictions: TopicTemplate,
        errors: TopicTemplate,
        qos: int,
        metrics: MqttMetrics,
    ) -> None:
        self._client = client
        self._topics = {"prediction": predictions, "error": errors}
        self._qos = qos
        self._metrics = metrics
        self._properties = Properties(PacketTypes.PUBLISH)
        self._properties.ContentType = CONTENT_TYPE

    async def publish(self, kind: str, topic_values: dict[str, str], body: Any) -> None:
        topic = self._topics[kind].format(**topic_values)
        start = time.perf_counter()
        try:
            await self._client.publish(
                topic, encode(body), qos=self._qos, properties=self._properties
            )
        except aiomqtt.MqttError:
            self._metrics.messages_out.labels(kind=kind, result="failed").inc()
            raise
        self._metrics.publish_seconds.observe(time.perf_counter() - start)
        self._metrics.messages_out.labels(kind=kind, result="ok").inc()
