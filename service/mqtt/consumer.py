"""The MQTT consumer: one persistent MQTT 5 session; events in, predictions and errors out.

Per message: match the topic (tenant, stream id), skip another shard's stream, decode and
validate the payload, then queue it on its stream's lane (``lanes``), which submits it to the
engine exactly as the HTTP route does, publishes the answers and only then marks the message
done; acknowledgements leave in arrival order (``acks``). So a PUBACK means the state is
committed, and anything not acknowledged when the service dies is redelivered by the broker
(clean start off, a session expiry) and answered as a duplicate by its event id.

A store that is down or full is retried (the message stays unacknowledged, the broker's
in-flight window fills, and the broker holds the rest: backpressure, no unbounded queue). A
lost connection is re-established with backoff; the work of the old one is finished but its
acknowledgements are dropped, since the broker will redeliver those messages anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, cast

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from service.api.deps import AppContext
from service.api.errors import ApiError, ErrorCode
from service.api.failures import failure_error
from service.api.parsing import FieldError, ParsedEvent, check_stream_id
from service.engine import EngineStopped, Event, EventResult, Rejection
from service.engine.encode import prediction_body, rejection_error
from service.mqtt.acks import AckSlot, AckWindow
from service.mqtt.lanes import StreamLanes
from service.mqtt.metrics import MqttMetrics
from service.mqtt.payload import decode_events, is_senml
from service.mqtt.publisher import Publisher
from service.mqtt.senml import feature_units
from service.mqtt.settings import MqttConfig
from service.mqtt.topics import SENML_SUFFIX
from service.mqtt.wire import disable_nagle
from service.settings import TENANT_PATTERN

log = logging.getLogger(__name__)

RECONNECT_MIN_S = 0.25
RECONNECT_MAX_S = 5.0
STORE_RETRY_MAX_S = 2.0
CONNECT_TIMEOUT_S = 10.0
PENDING_PUBLISH_WARNING = 10_000  # aiomqtt warns past this many unconfirmed publishes


class _StoppingError(Exception):
    """The service stops: leave the message unacknowledged (it is redelivered)."""


@dataclass
class _Message:
    """A received event message on its way through its stream's lane."""

    slot: AckSlot
    publisher: Publisher
    topic_values: dict[str, str]
    events: list[ParsedEvent]
    error: ApiError | None
    received_at: float
    started: float


class MqttConsumer:
    def __init__(self, config: MqttConfig, ctx: AppContext) -> None:
        self.config = config
        self._ctx = ctx
        served = ctx.registry.get(config.model)
        self._model = served.name
        self._spec = served.features
        self._output_names = served.output_names
        self._units = feature_units(getattr(served.model, "metadata", None))
        self.metrics: MqttMetrics = ctx.metrics.mqtt
        self._lanes: StreamLanes[_Message] = StreamLanes(self._apply)
        self._window: AckWindow | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.connected = False
        if config.receive_maximum > ctx.settings.dedupe_window:
            log.warning(
                "mqtt_receive_maximum (%d) > dedupe_window (%d): after a crash, a redelivered "
                "event older than the stream's last %d may be refused as out of order",
                config.receive_maximum,
                ctx.settings.dedupe_window,
                ctx.settings.dedupe_window,
            )

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="mqtt-consumer")

    async def stop(self, grace_s: float) -> None:
        """Take no new message, let the running passes finish (and acknowledge) for up to
        ``grace_s``, then disconnect; the broker keeps the session and what was not acked."""
        self._stopping = True
        await self._lanes.wait_idle(grace_s)
        await self._lanes.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._set_connected(False)

    def _set_connected(self, up: bool) -> None:
        self.connected = up
        self.metrics.connected.set(1 if up else 0)

    def _client(self) -> aiomqtt.Client:
        cfg = self.config
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = cfg.session_expiry_s
        props.ReceiveMaximum = cfg.receive_maximum
        tls = None
        if cfg.tls:
            tls = ssl.create_default_context(
                cafile=str(cfg.tls_ca_file) if cfg.tls_ca_file else None
            )
        client = aiomqtt.Client(
            cfg.host,
            cfg.port,
            identifier=cfg.client_id,
            username=cfg.username,
            password=cfg.password,
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=False,
            keepalive=cfg.keep_alive_s,
            properties=props,
            tls_context=tls,
            timeout=CONNECT_TIMEOUT_S,
            max_inflight_messages=cfg.publish_inflight,
        )
        # Up to receive_maximum messages are answered at once, each by one or more publishes.
        client.pending_calls_threshold = PENDING_PUBLISH_WARNING
        # aiomqtt has no switch for manual acknowledgement yet (empicano/aiomqtt#345); the
        # paho-mqtt client under it has (paho-mqtt >= 2.0: manual_ack_set / ack).
        client._client.manual_ack_set(True)
        return client

    async def _run(self) -> None:
        delay = RECONNECT_MIN_S
        first = True
        while not self._stopping:
            if not first:
                self.metrics.reconnects.inc()
            first = False
            client = self._client()
            window = AckWindow(client._client.ack)
            try:
                async with client:
                    disable_nagle(client)  # PUBACKs and predictions are small, awaited writes
                    self._window = window
                    await self._subscribe(client)
                    self._set_connected(True)
                    delay = RECONNECT_MIN_S
                    log.info("MQTT connected to %s:%d", self.config.host, self.config.port)
                    publisher = Publisher(
                        client,
                        predictions=self.config.predictions,
                        errors=self.config.errors,
                        qos=self.config.qos,
                        metrics=self.metrics,
                    )
                    async for message in client.messages:
                        self._receive(message, window, publisher)
            except aiomqtt.MqttError as exc:
                log.warning("MQTT connection to %s:%d: %s", self.config.host, self.config.port, exc)
            except Exception:  # a bug must not end MQTT for the life of the process
                log.exception("MQTT consumer failed; reconnecting")
            finally:
                window.close()
                self._set_connected(False)
                self.metrics.in_flight.set(0)
            await asyncio.sleep(delay)
            delay = min(RECONNECT_MAX_S, delay * 2)

    async def _subscribe(self, client: aiomqtt.Client) -> None:
        # Retained messages are not events of now: never have them sent on subscribe.
        options = SubscribeOptions(
            qos=self.config.qos, retainHandling=SubscribeOptions.RETAIN_DO_NOT_SEND
        )
        events = self.config.events
        for topic in (events.subscription(), events.subscription(SENML_SUFFIX)):
            granted = await client.subscribe(topic, options=options)
            refused = [rc for rc in granted if getattr(rc, "is_failure", False)]
            if refused:  # e.g. the broker's ACL: connected but deaf would look healthy
                raise aiomqtt.MqttError(
                    f"the broker refused the subscription {topic}: {refused[0]}"
                )

    # -- one message -----------------------------------------------------------------------
    def _receive(self, message: aiomqtt.Message, window: AckWindow, publisher: Publisher) -> None:
        slot = window.receive(message.mid, message.qos)
        self.metrics.in_flight.set(len(window))
        if self._stopping:
            return  # unacknowledged: redelivered to the next session
        topic = message.topic.value
        matched = self.config.events.match(topic)
        if matched is None:
            log.warning("MQTT message on %r matches no events topic; dropped", topic)
            self._finish(slot, "unroutable")
            return
        values, extra = matched
        tenant = values.get("tenant", self.config.tenant)
        stream_id = values["stream_id"]
        shard = self.config.shard
        if shard is not None and not shard.owns(tenant, stream_id):
            self._finish(slot, "other_shard")
            return
        received_at = time.time()
        events: list[ParsedEvent] = []
        error: ApiError | None = None
        try:
            self._check_names(tenant, stream_id)
            content_type = getattr(message.properties, "ContentType", None)
            events = decode_events(
                topic,
                bytes(message.payload) if message.payload is not None else b"",
                senml_pack=is_senml(content_type, extra),
                spec=self._spec,
                units=self._units,
                max_bytes=self._ctx.settings.max_body_bytes,
                max_events=self._ctx.settings.max_events_per_request,
                now=received_at,
            )
        except ApiError as exc:
            error = exc
        item = _Message(slot, publisher, values, events, error, received_at, time.perf_counter())
        self._lanes.put((tenant, stream_id), item)

    def _check_names(self, tenant: str, stream_id: str) -> None:
        if not TENANT_PATTERN.match(tenant):
            raise ApiError(
                ErrorCode.INVALID_REQUEST,
                f"tenant {tenant!r} in the topic is not a valid tenant name",
                {"tenant": tenant},
            )
        try:
            check_stream_id(stream_id, self._ctx.stream_id_re)
        except FieldError as exc:
            raise ApiError(exc.code, exc.message, exc.detail()) from None

    def _finish(self, slot: AckSlot, outcome: str, started: float | None = None) -> None:
        slot.finish()
        self.metrics.messages_in.labels(outcome=outcome).inc()
        if started is not None:
            self.metrics.message_seconds.observe(time.perf_counter() - started)
        if self._window is not None:
            self.metrics.in_flight.set(len(self._window))

    # -- one pass of a stream's lane -------------------------------------------------------
    async def _apply(self, key: Hashable, items: list[_Message]) -> None:
        tenant, stream_id = cast(tuple[str, str], key)
        valid = [m for m in items if m.error is None]
        events = [Event(stream_id, e.t, e.x, e.id, m.received_at) for m in valid for e in m.events]
        try:
            results = await self._submit(tenant, events) if events else []
        except _StoppingError:
            return
        try:
            await self._answer_all(items, results)
        except Exception:
            # A bug past the commit must not hold the acknowledgement window shut: the
            # states are committed, so the messages are done (as an HTTP 500 would be).
            log.exception("MQTT answers of %d message(s) failed", len(items))
            for m in items:
                if not m.slot.done:
                    self._finish(m.slot, "failed", m.started)

    async def _answer_all(
        self, items: list[_Message], results: list[EventResult] | ApiError
    ) -> None:
        """Publish every message's answers, then mark each done whose answers went out; a
        message whose publish failed for a lost connection stays unacknowledged."""
        answers: list[tuple[_Message, str, list[tuple[str, Any]]]] = []
        position = 0
        for m in items:
            if m.error is not None:
                answers.append((m, "invalid", [("error", m.error.body())]))
                continue
            if isinstance(results, ApiError):
                answers.append((m, "failed", [("error", results.body())]))
                continue
            mine = results[position : position + len(m.events)]
            position += len(m.events)
            answers.append((m, _outcome(mine), [self._answer(r) for r in mine]))
        sent = await asyncio.gather(
            *(self._publish(m, out) for m, _, out in answers), return_exceptions=True
        )
        for (m, outcome, _), ok in zip(answers, sent, strict=True):
            if ok is True:
                self._finish(m.slot, outcome, m.started)
            elif not isinstance(ok, aiomqtt.MqttError):
                log.error("MQTT answer not published: %r", ok)
                self._finish(m.slot, "failed", m.started)

    def _answer(self, result: EventResult) -> tuple[str, Any]:
        if isinstance(result, Rejection):
            return "error", {"error": rejection_error(result)}
        return "prediction", prediction_body(result, self._output_names)

    async def _publish(self, m: _Message, answers: list[tuple[str, Any]]) -> bool:
        # Started in order, so a stream's answers leave in order; awaited together.
        await asyncio.gather(
            *(m.publisher.publish(kind, m.topic_values, body) for kind, body in answers)
        )
        return True

    async def _submit(self, tenant: str, events: list[Event]) -> list[EventResult] | ApiError:
        """The engine's results, or the error every message of the pass is answered with.
        A store that is down or full and a stopping engine are retried until the service
        stops (then :class:`_StoppingError`)."""
        delay = 0.05
        while True:
            if self._stopping:
                raise _StoppingError
            engine = self._ctx.engine
            try:
                if engine is None:
                    raise EngineStopped("the engine is not running")
                return await engine.submit(tenant, self._model, events)
            except Exception as exc:
                err = failure_error(exc, 0)
                if err is None:
                    log.exception("MQTT events failed")
                    return ApiError(ErrorCode.INTERNAL, "internal error")
                if err.status != 503:
                    return err
                log.warning("MQTT events wait for the state store: %s", err.message)
            await asyncio.sleep(delay)
            delay = min(STORE_RETRY_MAX_S, delay * 2)


def _outcome(results: list[EventResult]) -> str:
    if any(isinstance(r, Rejection) for r in results):
        return "rejected"
    if all(not isinstance(r, Rejection) and r.duplicate for r in results):
        return "duplicate"
    return "applied"
