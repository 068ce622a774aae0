"""Prometheus series of the service: base units, ``liquid_`` prefix, no stream id as a label.

The objects are made by :class:`Metrics` when the app starts (no registration at import). With
several uvicorn workers, ``PROMETHEUS_MULTIPROC_DIR`` is set before the workers start and
``render_latest`` merges every process's files (prometheus-client multiprocess mode); gauges
then use ``livesum`` so that dead workers drop out.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from service.mqtt.metrics import MqttMetrics
from service.store.reasons import COUNTED_RESETS

# 0.1 ms to 2.5 s: from an in-memory store hit to a stalled Redis.
LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)
# Stages of the hot path take from microseconds (decoding one event) to a stalled store.
STAGE_BUCKETS = (0.00001, 0.000025, 0.00005, *LATENCY_BUCKETS)
# The per-batch time breakdown (liquid_stage_seconds{stage}): per request for the API's stages,
# per batch for the engine's (queue_wait: the batch's oldest event).
STAGES = (
    "decode",
    "validate",
    "queue_wait",
    "store_load",
    "plan",
    "model",
    "store_write",
    "encode",
    "publish",
)
BATCH_SIZE_BUCKETS = tuple(float(2**i) for i in range(0, 17))  # 1 .. 65536 events
# Δt and lag span a dropped packet (ms) to a device asleep for a day.
TIME_GAP_BUCKETS = (
    0.001,
    0.01,
    0.05,
    0.1,
    0.5,
    1.0,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    900.0,
    3600.0,
    21600.0,
    86400.0,
)

EVENT_OUTCOMES = ("applied", "duplicate", "out_of_order", "rejected", "reset")


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class Metrics:
    """Every series the service exports, registered on one registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.http_requests = Counter(
            "liquid_http_requests",
            "HTTP requests by route template, method and status code.",
            ["route", "method", "status"],
            registry=r,
        )
        self.http_request_duration = Histogram(
            "liquid_http_request_duration_seconds",
            "HTTP request latency by route template.",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.events = Counter(
            "liquid_events",
            "Events by outcome (applied, duplicate, out_of_order, rejected, reset).",
            ["outcome"],
            registry=r,
        )
        self.stream_resets = Counter(
            "liquid_stream_resets",
            "Stream states restarted, by reason (gap, model_change, expired).",
            ["reason"],
            registry=r,
        )
        self.state_conflicts = Counter(
            "liquid_state_conflicts",
            "Compare-and-set conflicts on a stream's state (another writer won; recomputed).",
            registry=r,
        )
        self.queue_wait = Histogram(
            "liquid_queue_wait_seconds",
            "Time an event waited in the batcher queue.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_compute = Histogram(
            "liquid_batch_compute_seconds",
            "Model compute time of one batched step.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.state_store = Histogram(
            "liquid_state_store_seconds",
            "State store round trip for a batch, by operation.",
            ["op"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        # Redis Cluster only: per-node round trips by node role (never by address: a cluster's
        # addresses change with every failover and would explode the series).
        self.store_node_seconds = Histogram(
            "liquid_state_store_node_seconds",
            "Redis Cluster: one node's round trip within a batch, by operation and node role "
            "(primary: the scripts; replica: waiting for replica acknowledgements).",
            ["op", "role"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.store_redirects = Counter(
            "liquid_state_store_redirects",
            "Redis Cluster: MOVED / ASK replies followed (resharding, failover).",
            ["kind"],
            registry=r,
        )
        self.store_retries = Counter(
            "liquid_state_store_retries",
            "Redis Cluster: script calls sent again (moved, ask, noscript), masters whose one "
            "call went again per slot (per_slot), nodes whose replica acknowledgement fell "
            "short (replica_ack).",
            ["reason"],
            registry=r,
        )
        self.batch_size = Histogram(
            "liquid_batch_size",
            "Events per batched step.",
            buckets=BATCH_SIZE_BUCKETS,
            registry=r,
        )
        self.event_dt = Histogram(
            "liquid_event_dt_seconds",
            "Elapsed time Δt applied to events.",
            buckets=TIME_GAP_BUCKETS,
            registry=r,
        )
        self.event_lag = Histogram(
            "liquid_event_lag_seconds",
            "Receive time minus event time.",
            buckets=TIME_GAP_BUCKETS,
            registry=r,
        )
        self.stage = Histogram(
            "liquid_stage_seconds",
            "Time per stage of the hot path: per request (decode, validate, encode) or per "
            "batch (queue_wait of its oldest event, store_load, plan, model, store_write, "
            "publish).",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=r,
        )
        self.active_streams = Gauge(
            "liquid_active_streams",
            "Streams with an event in the active window, this process.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.websocket_connections = Gauge(
            "liquid_websocket_connections",
            "Open live-feed WebSocket connections.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.live_dropped = Counter(
            "liquid_live_messages_dropped",
            "Live messages dropped because a subscriber's buffer was full.",
            registry=r,
        )
        self.live_send_timeouts = Counter(
            "liquid_live_send_timeouts",
            "Live sessions ended because the client took no message within the send timeout.",
            registry=r,
        )
        self.model_info = Gauge(
            "liquid_model_info",
            "Served models (value 1), by name and version hash.",
            ["model", "version"],
            registry=r,
            multiprocess_mode="liveall",
        )
        self.state_store_up = Gauge(
            "liquid_state_store_up",
            "1 when the state store answered its last health check.",
            registry=r,
            multiprocess_mode="livemin",
        )
        for outcome in EVENT_OUTCOMES:
            self.events.labels(outcome=outcome)
        for reason in COUNTED_RESETS:
            self.stream_resets.labels(reason=reason)
        self.stages = {name: self.stage.labels(stage=name) for name in STAGES}
        # MQTT ingestion's series, present (at zero) whether or not MQTT is configured.
        self.mqtt = MqttMetrics(r, LATENCY_BUCKETS)

    def render_latest(self) -> tuple[bytes, str]:
        """The exposition text for ``/metrics`` (all workers' series in multiprocess mode)."""
        if multiprocess_dir():
            merged = CollectorRegistry()
            multiprocess.MultiProcessCollector(merged)
            return generate_latest(merged), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
