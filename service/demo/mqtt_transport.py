"""``liquid demo --mqtt``: events published as SenML packs, predictions awaited on MQTT.

Each event is one SenML pack (RFC 8428) published with QoS 1 to the stream's events topic with
the MQTT 5 content type ``application/senml+json``: base name (the stream) and base time (the
event's time), one record per feature, named as the model's features. A pack carries no event
id, so the service derives one from the topic and the payload (:func:`derived_id`); the
transport computes the same id and waits for it on the one subscription to
``sensors/+/predictions`` and ``sensors/+/errors``. The topics are the service's defaults.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import ssl
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from service.client import Prediction, ServiceError
from service.mqtt.settings import MqttOptions, broker_address
from service.mqtt.topics import TopicTemplate
from service.mqtt.wire import SENML_CONTENT_TYPE, derived_id, disable_nagle

CONNECT_TIMEOUT_S = 5.0
QOS = 1


def _default_topic(field: str) -> TopicTemplate:
    return TopicTemplate.parse(str(MqttOptions.model_fields[field].default))


def senml_pack(
    stream_id: str, t: float, x: Mapping[str, float] | Sequence[float], names: Sequence[str]
) -> bytes:
    """One event as a SenML pack: ``bn`` the stream, ``bt`` its time, a record per feature
    (``x`` by name, or in the order of ``names``)."""
    named = x.items() if isinstance(x, Mapping) else zip(names, x, strict=True)
    records: list[dict[str, Any]] = [{"n": n, "v": float(v)} for n, v in named]
    records[0] = {"bn": f"urn:dev:liquid-demo:{stream_id}:", "bt": t, **records[0]}
    return json.dumps(records, separators=(",", ":")).encode()


def _client(url: str) -> aiomqtt.Client:
    tls, host, port, user, password = broker_address(url)
    return aiomqtt.Client(
        host,
        port,
        identifier=f"liquid-demo-{os.getpid()}-{secrets.token_hex(4)}",
        username=user,
        password=password,
        protocol=aiomqtt.ProtocolVersion.V5,
        clean_start=True,
        tls_context=ssl.create_default_context() if tls else None,
        timeout=CONNECT_TIMEOUT_S,
    )


@contextlib.asynccontextmanager
async def connect(url: str, names: Sequence[str]) -> AsyncIterator[MqttTransport]:
    """A transport connected to the broker at ``url`` and subscribed to the answers
    (``aiomqtt.MqttError`` when the broker cannot be reached)."""
    async with _client(url) as client:
        disable_nagle(client)  # each event waits for its answer
        transport = MqttTransport(client, names)
        for template in (transport.predictions, transport.errors):
            await client.subscribe(template.subscription(), qos=QOS)
        reader = asyncio.create_task(transport.read(), name="demo-mqtt-reader")
        try:
            yield transport
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader


class MqttTransport:
    """Events over one MQTT connection (made by :func:`connect`): :meth:`send` publishes an
    event and returns its prediction, or raises :class:`ServiceError` (status 0) with the code
    published on the error topic."""

    def __init__(self, client: aiomqtt.Client, names: Sequence[str]) -> None:
        self.names = list(names)
        self.events = _default_topic("mqtt_events_topic")
        self.predictions = _default_topic("mqtt_predictions_topic")
        self.errors = _default_topic("mqtt_errors_topic")
        self._client = client
        self._properties = Properties(PacketTypes.PUBLISH)
        self._properties.ContentType = SENML_CONTENT_TYPE
        self._waiting: dict[tuple[str, str], asyncio.Future[Prediction]] = {}

    async def send(
        self,
        stream_id: str,
        t: float,
        x: Mapping[str, float] | Sequence[float],
        id: str | None = None,
    ) -> Prediction:
        """Publish one event (``id`` is unused: the service derives the pack's id)."""
        topic = self.events.format(stream_id=stream_id)
        payload = senml_pack(stream_id, t, x, self.names)
        key = (stream_id, derived_id(topic, payload, 0))
        future: asyncio.Future[Prediction] = asyncio.get_running_loop().create_future()
        self._waiting[key] = future
        try:
            await self._client.publish(topic, payload, qos=QOS, properties=self._properties)
            return await future
        finally:
            self._waiting.pop(key, None)

    async def read(self) -> None:
        """Route answers to the waiting events until the connection ends (then fail them)."""
        try:
            async for message in self._client.messages:
                self._route(str(message.topic), message.payload)
        except aiomqtt.MqttError as exc:
            for future in self._waiting.values():
                if not future.done():
                    future.set_exception(exc)

    def _route(self, topic: str, payload: Any) -> None:
        """Resolve the future a prediction or an error answers (others' answers are ignored)."""
        try:
            body = json.loads(payload)
        except (TypeError, ValueError):
            return
        if not isinstance(body, dict):
            return
        for template, is_error in ((self.predictions, False), (self.errors, True)):
            matched = template.match(topic)
            if matched is None or matched[1]:
                continue
            stream_id = matched[0]["stream_id"]
            if not is_error:
                future = self._waiting.get((stream_id, str(body.get("id"))))
                if future is not None and not future.done():
                    future.set_result(Prediction.from_json(body))
                return
            error = body.get("error") or {}
            details = error.get("details")
            event_id = details.get("id") if isinstance(details, dict) else None
            # A refused message names no event: it answers the stream's events in flight.
            for (sid, eid), future in self._waiting.items():
                if sid == stream_id and event_id in (None, eid) and not future.done():
                    future.set_exception(
                        ServiceError(0, str(error.get("code")), str(error.get("message")), details)
                    )
            return
