"""The service's one configuration object.

:class:`Settings` is built once at start-up (from ``LIQUID_*`` environment variables, a ``.env``
file is *not* read, and overrides passed by the CLI) and injected into
:func:`service.app.create_app`. Nothing here reads the environment at import time.

Every field is validated at construction, with a message that says what to do.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from service.mqtt.settings import MqttOptions

# `liquid serve` hands its settings to worker processes in this variable (JSON).
SETTINGS_ENV = "LIQUID_SERVE_SETTINGS_JSON"
# The demo model shipped in the package: served when no model is given.
DEMO_MODEL_DIR = Path(__file__).resolve().parent / "demo_model"

LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
DEFAULT_STREAM_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
# Tenant names become part of store keys and channel names: keep them plain.
TENANT_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def _split_list(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def parse_api_keys(value: Any) -> dict[str, str]:
    """``"key1:tenantA,key2:tenantB"``, a JSON object ``{"key1": "tenantA"}`` or a mapping."""
    if value is None:
        return {}
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return {}
        if text.startswith("{"):
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"api_keys looks like JSON but does not parse: {exc}") from exc
        else:
            pairs: dict[str, str] = {}
            for item in _split_list(text):
                key, sep, tenant = item.rpartition(":")
                if not sep or not key or not tenant:
                    raise ValueError(
                        "api_keys must be 'key:tenant' pairs separated by commas "
                        '(e.g. "k1:plant-a,k2:plant-b") or a JSON object {"key": "tenant"}'
                    )
                if key in pairs:
                    raise ValueError("api_keys lists the same key twice")
                pairs[key] = tenant
            value = pairs
    if not isinstance(value, dict):
        raise ValueError('api_keys must be a mapping {"key": "tenant"}')
    out: dict[str, str] = {}
    for key, tenant in value.items():
        if not isinstance(key, str) or not isinstance(tenant, str):
            raise ValueError("api_keys keys and tenants must be strings")
        if len(key) < 8:
            raise ValueError("every API key must be at least 8 characters long")
        if not TENANT_PATTERN.match(tenant):
            raise ValueError(
                f"tenant {tenant!r} is not a valid tenant name: use 1-64 letters, digits, "
                "'.', '_' or '-', starting with a letter or digit"
            )
        out[key] = tenant
    return out


# -- threads and processes, sized from the cores this process may use --------------------------
# A worker is one event loop (decoding, planning, store I/O: one core when busy) plus the
# model step on the engine's worker thread. Torch's own default (one intra-op thread per core)
# makes the step compete with the event loop for the same cores; measured on 2 cores, one
# thread served +50% at 64 connections (bench/service_load.py measures it again).
MAX_AUTO_TORCH_THREADS = 4  # the served models are small: more threads cost more than they give


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity; a container's CPU quota is not seen)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def default_workers(redis_url: str | None, cores: int | None = None) -> int:
    """1 with the in-process store (its state lives in one process); with Redis one worker per
    two cores. A worker needs about one core (small model calls run on its event loop's
    thread), and on 2 cores 2 workers served 15-49% more events closed-loop but made the
    open-loop tail 2-4x longer (BENCHMARKS.md, service under load): the other core is for
    Redis, the clients and the model's intra-op threads on large batches."""
    if not redis_url:
        return 1
    return max(1, (cores or available_cores()) // 2)


def default_torch_threads(workers: int, cores: int | None = None) -> int:
    """Intra-op threads per worker: its share of the cores less one for the event loop
    (at least 1, at most :data:`MAX_AUTO_TORCH_THREADS`)."""
    share = (cores or available_cores()) // max(1, workers)
    return max(1, min(MAX_AUTO_TORCH_THREADS, share - 1))


def is_loopback(host: str) -> bool:
    """True when ``host`` only accepts connections from this machine."""
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Settings(BaseSettings, MqttOptions):
    """Configuration of ``liquid serve`` and of :func:`service.app.create_app`.

    Environment variables carry the ``LIQUID_`` prefix (``LIQUID_REDIS_URL`` ...). Lists and
    mappings accept either JSON or a comma-separated form. The ``mqtt_*`` fields come from
    :class:`service.mqtt.settings.MqttOptions`.
    """

    model_config = SettingsConfigDict(
        env_prefix="LIQUID_",
        case_sensitive=False,
        extra="forbid",
        validate_default=True,
    )

    models: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description="Model artifact directories to serve (names come from the artifacts; the "
        "first is the default). Empty: the demo model shipped with the package.",
    )
    redis_url: str | None = Field(
        default=None,
        description="Redis URL for stream states and live feeds: redis://, rediss://, unix:// "
        "(one server) or redis+cluster://host:port[,host:port...] (a Redis Cluster, any nodes "
        "as seeds). None: an in-process store (one process only).",
    )
    redis_min_replicas_ack: int = Field(
        default=0,
        ge=0,
        description="Replicas that must acknowledge a batch's writes (Redis WAIT) before its "
        "events are answered 2xx; a shortfall within redis_replica_ack_timeout_ms answers "
        "503. 0: answer once the master applied them (a failover may lose the last writes).",
    )
    redis_replica_ack_timeout_ms: int = Field(
        default=1000,
        gt=0,
        description="Longest wait (ms) for redis_min_replicas_ack replicas to acknowledge.",
    )
    device: str = Field(
        default="auto", description="Torch device for the batched step: auto, cpu, cuda, cuda:N."
    )
    max_batch: int = Field(default=256, description="Most events in one batched step.")
    max_inflight_batches: int = Field(
        default=2,
        description="Batches processed at once: one may plan and compute while another waits "
        "on the store (batches sharing a stream never overlap). 1: one at a time.",
    )
    inline_steps: int = Field(
        default=4096,
        ge=0,
        description="On a CPU, a batch's model call of at most this many steps runs on the event "
        "loop's thread, not the worker thread (a thread hop makes the step wait for the GIL "
        "behind the busy loop). 0: always the worker thread.",
    )
    batch_buckets: list[int] | None = Field(
        default=None,
        description="Padded batch sizes of the device step (a batch runs at the smallest that "
        "holds it; fixed shapes for CUDA graphs). None: none on a CPU, powers of four up to "
        "max_batch on CUDA. Empty: none.",
    )
    max_delay_ms: float = Field(
        default=2.0, description="Longest wait (ms) for a batch to fill before it runs."
    )
    state_ttl_s: float = Field(
        default=7 * 86400.0, description="An idle stream's state expires after this many seconds."
    )
    max_gap_s: float | None = Field(
        default=86400.0,
        description="A gap between events longer than this resets the stream's state. None: never.",
    )
    first_event_dt_s: float | None = Field(
        default=None,
        description="Δt applied to a stream's first event. None: the model's default_dt.",
    )
    dedupe_window: int = Field(
        default=32, description="Recent event ids kept per stream to answer retries."
    )
    max_abs_input: float = Field(
        default=1e15,
        gt=0,
        description="Largest magnitude of a feature value; beyond it an event is refused (422 "
        "`value_out_of_range`). inf: only the float32 range.",
    )
    max_cas_retries: int = Field(
        default=16, description="Compare-and-set retries before a conflicting write gives up."
    )
    max_queue: int = Field(
        default=65536, description="Most events waiting for the engine; submitters wait beyond."
    )
    active_window_s: float = Field(
        default=300.0, description="A stream counts as active this long after its last event."
    )
    api_keys: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        description="API keys -> tenants ('key1:tenantA,key2:tenantB' or JSON). Empty: no "
        "authentication, one tenant 'default'.",
    )
    allow_insecure: bool = Field(
        default=False,
        description="Allow serving without API keys on a non-loopback address.",
    )
    host: str = Field(default="127.0.0.1", description="Address to bind.")
    port: int = Field(default=8000, description="TCP port to bind.")
    workers: int = Field(
        default_factory=lambda data: (
            1 if data.get("mqtt_url") else default_workers(data.get("redis_url"))
        ),
        description="Worker processes (needs redis_url when > 1). Default: 1 with the "
        "in-process store or with MQTT; with redis_url, one per two available cores.",
    )
    torch_threads: int = Field(
        default_factory=lambda data: default_torch_threads(data.get("workers") or 1),
        description="Torch intra-op threads per worker. Default: the worker's share of the "
        "cores less one for its event loop (1 to 4).",
    )
    max_body_bytes: int = Field(
        default=1024 * 1024, description="Largest request body accepted (bytes)."
    )
    max_events_per_request: int = Field(default=1000, description="Most events in one request.")
    stream_id_pattern: str = Field(
        default=DEFAULT_STREAM_ID_PATTERN, description="Regular expression a stream id must match."
    )
    live_buffer: int = Field(
        default=256,
        description="Messages buffered per live subscriber; beyond it the oldest are dropped.",
    )
    log_level: str = Field(default="info", description="Log level: " + ", ".join(LOG_LEVELS))
    # -- timeouts (slow or stalled clients cost bounded time and memory) ---------------------
    header_timeout_s: float = Field(
        default=10.0,
        description="A request's headers must arrive within this many seconds of its first byte "
        "(of the connection, for its first request); otherwise 408 and the socket is closed.",
    )
    body_timeout_s: float = Field(
        default=30.0,
        description="A request body must arrive whole within this many seconds; otherwise 408 "
        "`request_timeout` and the connection is closed.",
    )
    keep_alive_timeout_s: float = Field(
        default=5.0, description="An idle keep-alive HTTP connection is closed after this."
    )
    ws_send_timeout_s: float = Field(
        default=10.0,
        description="A WebSocket message the client does not take within this many seconds "
        "(it stopped reading) ends the session and aborts the socket.",
    )
    ws_max_in_flight: int = Field(
        default=64,
        description="Messages of one live WebSocket being answered at once (pipelining); when "
        "this many wait for their answers, the socket is not read until one is answered.",
    )
    ws_compression: bool = Field(
        default=False,
        description="Offer permessage-deflate on WebSockets. Off by default: the frames are "
        "small JSON or MessagePack, and compressing each one cost more CPU than it saved.",
    )
    ws_idle_timeout_s: float | None = Field(
        default=3600.0,
        description="A WebSocket with no message either way for this long is closed (1000, "
        "'idle timeout'). None: never.",
    )
    ws_ping_interval_s: float | None = Field(
        default=20.0, description="Seconds between WebSocket keepalive pings. None: no pings."
    )
    ws_ping_timeout_s: float | None = Field(
        default=20.0, description="A ping not answered within this closes the socket (1011)."
    )
    retry_after_s: int = Field(
        default=5,
        description="`Retry-After` (seconds) of 503 answers when the state store is down or full.",
    )
    memory_release_threshold: int = Field(
        default=256,
        ge=0,
        description="When this many live WebSocket sessions have closed since their peak (and at "
        "least half of them), collect garbage and return free heap to the OS "
        "(service/memory_release.py). 0: never.",
    )

    # -- field validation ------------------------------------------------------------------
    @field_validator("models", mode="before")
    @classmethod
    def _models_from_text(cls, value: Any) -> Any:
        if value is None:
            return []
        if isinstance(value, (str, Path)):
            text = str(value).strip()
            if text.startswith("["):
                try:
                    return json.loads(text)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"models looks like JSON but does not parse: {exc}") from exc
            return _split_list(text)
        return value

    @field_validator("api_keys", mode="before")
    @classmethod
    def _api_keys_from_text(cls, value: Any) -> dict[str, str]:
        return parse_api_keys(value)

    @field_validator("redis_url", mode="before")
    @classmethod
    def _redis_url(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip() or None
        if value is not None and not str(value).startswith(
            ("redis://", "rediss://", "unix://", "redis+cluster://")
        ):
            raise ValueError(
                "redis_url must start with redis://, rediss://, unix:// or redis+cluster:// "
                "(e.g. redis://localhost:6379/0)"
            )
        return value

    @field_validator(
        "max_gap_s",
        "first_event_dt_s",
        "ws_idle_timeout_s",
        "ws_ping_interval_s",
        "ws_ping_timeout_s",
        mode="before",
    )
    @classmethod
    def _none_words(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() in ("", "none", "null", "off"):
            return None
        return value

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        value = value.strip().lower()
        if not _DEVICE_PATTERN.match(value):
            raise ValueError(f"device must be auto, cpu, mps, cuda or cuda:N; got {value!r}")
        return value

    @field_validator(
        "max_batch",
        "dedupe_window",
        "max_cas_retries",
        "live_buffer",
        "max_inflight_batches",
        "ws_max_in_flight",
    )
    @classmethod
    def _positive_int(cls, value: int, info: Any) -> int:
        minimum = 0 if info.field_name == "dedupe_window" else 1
        if value < minimum:
            raise ValueError(f"{info.field_name} must be >= {minimum}; got {value}")
        return value

    @field_validator("batch_buckets")
    @classmethod
    def _buckets(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and any(b < 1 for b in value):
            raise ValueError(f"batch_buckets must be batch sizes >= 1; got {value}")
        return value

    @field_validator(
        "header_timeout_s",
        "body_timeout_s",
        "keep_alive_timeout_s",
        "ws_send_timeout_s",
        "ws_idle_timeout_s",
        "ws_ping_interval_s",
        "ws_ping_timeout_s",
    )
    @classmethod
    def _timeout(cls, value: float | None, info: Any) -> float | None:
        optional = info.field_name in (
            "ws_idle_timeout_s",
            "ws_ping_interval_s",
            "ws_ping_timeout_s",
        )
        if value is None and optional:
            return None
        if value is None or not (value > 0 and value < float("inf")):
            extra = " (or none)" if optional else ""
            raise ValueError(
                f"{info.field_name} must be a finite number of seconds > 0{extra}; got {value}"
            )
        return value

    @field_validator("retry_after_s")
    @classmethod
    def _retry_after(cls, value: int) -> int:
        if value < 0:
            raise ValueError(f"retry_after_s must be >= 0; got {value}")
        return value

    @field_validator("max_delay_ms", "first_event_dt_s")
    @classmethod
    def _non_negative(cls, value: float | None, info: Any) -> float | None:
        if value is not None and not (value >= 0 and value < float("inf")):
            raise ValueError(f"{info.field_name} must be a finite number >= 0; got {value}")
        return value

    @field_validator("state_ttl_s", "active_window_s", "max_gap_s")
    @classmethod
    def _positive_seconds(cls, value: float | None, info: Any) -> float | None:
        if value is not None and not (value > 0 and value < float("inf")):
            raise ValueError(
                f"{info.field_name} must be a finite number of seconds > 0; got {value}"
            )
        return value

    @field_validator("port")
    @classmethod
    def _port(cls, value: int) -> int:
        if not 0 <= value <= 65535:
            raise ValueError(f"port must be within 0..65535; got {value}")
        return value

    @field_validator("workers", "torch_threads")
    @classmethod
    def _workers(cls, value: int, info: Any) -> int:
        if value < 1:
            raise ValueError(f"{info.field_name} must be >= 1; got {value}")
        return value

    @field_validator("max_body_bytes")
    @classmethod
    def _body(cls, value: int) -> int:
        if value < 1024:
            raise ValueError(f"max_body_bytes must be >= 1024; got {value}")
        return value

    @field_validator("max_events_per_request")
    @classmethod
    def _events(cls, value: int) -> int:
        if value < 1:
            raise ValueError(f"max_events_per_request must be >= 1; got {value}")
        return value

    @field_validator("stream_id_pattern")
    @classmethod
    def _pattern(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"stream_id_pattern is not a valid regular expression: {exc}") from exc
        return value

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        value = value.strip().lower()
        if value not in LOG_LEVELS:
            raise ValueError(f"log_level must be one of {', '.join(LOG_LEVELS)}; got {value!r}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.max_queue < self.max_batch:
            raise ValueError(
                f"max_queue ({self.max_queue}) must be >= max_batch ({self.max_batch})"
            )
        if self.workers > 1 and self.redis_url is None:
            raise ValueError(
                "workers > 1 needs redis_url: with the in-process store every worker would keep "
                "its own copy of each stream's state"
            )
        return self

    # -- derived values --------------------------------------------------------------------
    @property
    def auth_enabled(self) -> bool:
        return bool(self.api_keys)

    def resolved_device(self) -> str:
        """The device as :func:`liquidcore.device.resolve_device` (the one resolver) names it."""
        from liquidcore.device import resolve_device  # lazy: importing torch is slow

        return str(resolve_device(self.device))

    def check_bind_is_safe(self) -> None:
        """Refuse to serve without keys on a non-loopback address unless explicitly allowed."""
        if not self.api_keys and not self.allow_insecure and not is_loopback(self.host):
            raise ValueError(
                f"refusing to serve without API keys on {self.host}: set LIQUID_API_KEYS "
                "(e.g. 'key:tenant'), bind to 127.0.0.1, or pass --allow-insecure "
                "(LIQUID_ALLOW_INSECURE=true) if the network in front is trusted"
            )
