"""Prometheus series of the MQTT ingest (``liquid_mqtt_*``), made by
:class:`service.metrics.Metrics` on the service's registry (at zero when MQTT is off).

MQTT runs in one process per replica (workers = 1); the gauges still say how worker processes
merge (``livesum``/``livemax``) for a service with several workers and no MQTT.
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# How a received message ended (one per message; a message may carry several events).
MESSAGE_OUTCOMES = (
    "applied",  # every event applied (or answered as a duplicate)
    "duplicate",  # every event was a redelivery of an applied one
    "rejected",  # an event refused by the stream's state (out_of_order, non_finite_state)
    "invalid",  # the payload, content type or stream id is refused; nothing applied
    "failed",  # an internal error; answered on the error topic
    "other_shard",  # another replica's stream: acknowledged untouched
    "unroutable",  # a topic the events template does not match
)


class MqttMetrics:
    def __init__(self, registry: CollectorRegistry, latency_buckets: Sequence[float]) -> None:
        r = registry
        self.messages_in = Counter(
            "liquid_mqtt_messages_received",
            "MQTT event messages received, by outcome.",
            ["outcome"],
            registry=r,
        )
        self.messages_out = Counter(
            "liquid_mqtt_messages_published",
            "MQTT messages published, by kind (prediction, error) and result (ok, failed).",
            ["kind", "result"],
            registry=r,
        )
        self.in_flight = Gauge(
            "liquid_mqtt_in_flight",
            "Event messages received and not yet acknowledged.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.connected = Gauge(
            "liquid_mqtt_connected",
            "1 while the broker connection is up (0 also when MQTT is off).",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.reconnects = Counter(
            "liquid_mqtt_reconnects",
            "Connection attempts after the first (a lost or refused connection).",
            registry=r,
        )
        self.publish_seconds = Histogram(
            "liquid_mqtt_publish_seconds",
            "Time to publish one answer (QoS 1: until the broker's PUBACK).",
            buckets=latency_buckets,
            registry=r,
        )
        self.message_seconds = Histogram(
            "liquid_mqtt_message_seconds",
            "Time from receiving an event message to its acknowledgement being due.",
            buckets=latency_buckets,
            registry=r,
        )
        for outcome in MESSAGE_OUTCOMES:
            self.messages_in.labels(outcome=outcome)
        for kind in ("prediction", "error"):
            for result in ("ok", "failed"):
                self.messages_out.labels(kind=kind, result=result)
