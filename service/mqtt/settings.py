"""MQTT options of :class:`service.settings.Settings` (``LIQUID_MQTT_*``) and the connection
config derived from them.

:class:`MqttOptions` is a mixin of the service's one settings object (so every option is typed,
validated and documented in one place, and the environment names stay flat:
``LIQUID_MQTT_URL``, ``LIQUID_MQTT_SHARD`` ...). :class:`MqttConfig` is what the consumer
takes: the URL split into its parts, the templates compiled, the shard parsed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator

from service.mqtt.shard import Shard
from service.mqtt.topics import TopicTemplate

SCHEMES = {"mqtt": (False, 1883), "mqtts": (True, 8883)}
DEFAULT_CLIENT_ID = "liquidstream"
# MQTT 5 client identifiers: the broker must accept 1-23 of these; most accept more.
_CLIENT_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class MqttOptions(BaseModel):
    """The ``mqtt_*`` fields of the service settings. MQTT is off unless ``mqtt_url`` is set."""

    mqtt_url: str | None = Field(
        default=None,
        description="Broker URL: mqtt://host[:1883] or mqtts://host[:8883] (TLS); user and "
        "password may be given in it. None: no MQTT.",
    )
    mqtt_client_id: str | None = Field(
        default=None,
        description="MQTT client id; the broker keeps the persistent session under it, so it "
        "must be stable across restarts and unique per replica. Default: 'liquidstream', "
        "with '-K-of-N' appended when sharded.",
    )
    mqtt_username: str | None = Field(default=None, description="Broker user name.")
    mqtt_password: SecretStr | None = Field(default=None, description="Broker password.")
    mqtt_tls_ca_file: Path | None = Field(
        default=None,
        description="CA bundle to verify the broker with (mqtts://); default: the system CAs.",
    )
    mqtt_qos: int = Field(
        default=1,
        description="QoS of the event subscription and of published predictions and errors: "
        "1 (at least once, acknowledged after the state commit) or 0 (at most once).",
    )
    mqtt_events_topic: str = Field(
        default="sensors/{stream_id}/events",
        description="Topic template of incoming events ({stream_id}, optionally {tenant}, each "
        "a whole level). The same topic with '/senml' appended takes SenML packs.",
    )
    mqtt_predictions_topic: str = Field(
        default="sensors/{stream_id}/predictions",
        description="Topic template predictions are published to.",
    )
    mqtt_errors_topic: str = Field(
        default="sensors/{stream_id}/errors",
        description="Topic template per-message errors are published to (the HTTP error body).",
    )
    mqtt_tenant: str = Field(
        default="default",
        description="Tenant of MQTT streams when the events topic has no {tenant} level "
        "('default' is the tenant of a service without API keys).",
    )
    mqtt_model: str | None = Field(
        default=None, description="Served model MQTT events go to. Default: the default model."
    )
    mqtt_keep_alive_s: int = Field(default=30, description="MQTT keep-alive (s).")
    mqtt_session_expiry_s: int = Field(
        default=86400,
        description="How long the broker keeps the session (and queues events) while the "
        "service is away (s).",
    )
    mqtt_receive_maximum: int = Field(
        default=32,
        description="Most unacknowledged events the broker sends at once (MQTT 5 Receive "
        "Maximum): the bound on in-flight messages. Keep it <= dedupe_window so that every "
        "redelivery after a crash is recognised as a duplicate.",
    )
    mqtt_publish_inflight: int = Field(
        default=20,
        description="Most QoS 1 predictions and errors published and not yet acknowledged by "
        "the broker. Must not exceed the broker's Receive Maximum (Mosquitto: "
        "max_inflight_messages, default 20); beyond it publishes wait in the client.",
    )
    mqtt_shard: str | None = Field(
        default=None,
        description="'K/N': this replica applies only the streams whose stable hash mod N is "
        "K (0 <= K < N) and acknowledges the others untouched. None: all streams.",
    )

    @field_validator("mqtt_url", "mqtt_shard", "mqtt_client_id", "mqtt_model", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("mqtt_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None:
            broker_address(value)
        return value

    @field_validator("mqtt_client_id")
    @classmethod
    def _client_id(cls, value: str | None) -> str | None:
        if value is not None and not _CLIENT_ID.match(value):
            raise ValueError(
                f"mqtt_client_id must be 1-64 letters, digits, '.', '_' or '-'; got {value!r}"
            )
        return value

    @field_validator("mqtt_qos")
    @classmethod
    def _qos(cls, value: int) -> int:
        if value not in (0, 1):
            raise ValueError(f"mqtt_qos must be 0 or 1; got {value}")
        return value

    @field_validator("mqtt_events_topic", "mqtt_predictions_topic", "mqtt_errors_topic")
    @classmethod
    def _topic(cls, value: str, info: Any) -> str:
        TopicTemplate.parse(value, name=info.field_name)
        return value

    @field_validator("mqtt_tenant")
    @classmethod
    def _tenant(cls, value: str) -> str:
        if not _TENANT.match(value):
            raise ValueError(
                f"mqtt_tenant must be 1-64 letters, digits, '.', '_' or '-'; got {value!r}"
            )
        return value

    @field_validator(
        "mqtt_keep_alive_s",
        "mqtt_session_expiry_s",
        "mqtt_receive_maximum",
        "mqtt_publish_inflight",
    )
    @classmethod
    def _positive(cls, value: int, info: Any) -> int:
        upper = 65535 if info.field_name != "mqtt_session_expiry_s" else 0xFFFFFFFF
        if not 1 <= value <= upper:
            raise ValueError(f"{info.field_name} must be within 1..{upper}; got {value}")
        return value

    @field_validator("mqtt_shard")
    @classmethod
    def _shard(cls, value: str | None) -> str | None:
        if value is not None:
            Shard.parse(value)
        return value

    @model_validator(mode="after")
    def _mqtt_consistent(self) -> Any:
        if self.mqtt_url is None:
            return self
        # One MQTT session per process: worker processes of one replica would fight over it.
        if getattr(self, "workers", 1) > 1:
            raise ValueError(
                "MQTT needs workers = 1 (one MQTT session per process): run more replicas "
                "with --mqtt-shard K/N instead"
            )
        events = TopicTemplate.parse(self.mqtt_events_topic)
        for name in ("mqtt_predictions_topic", "mqtt_errors_topic"):
            out = TopicTemplate.parse(getattr(self, name))
            if set(out.placeholders) != set(events.placeholders):
                raise ValueError(
                    f"{name} must use the same placeholders as mqtt_events_topic "
                    f"({', '.join(events.placeholders)})"
                )
        return self

    def mqtt_config(self) -> MqttConfig | None:
        """The connection config, or None when MQTT is off."""
        if self.mqtt_url is None:
            return None
        tls, host, port, url_user, url_password = broker_address(self.mqtt_url)
        shard = Shard.parse(self.mqtt_shard) if self.mqtt_shard else None
        client_id = self.mqtt_client_id or (
            DEFAULT_CLIENT_ID + (f"-{shard.index}-of-{shard.count}" if shard else "")
        )
        password = self.mqtt_password.get_secret_value() if self.mqtt_password else url_password
        return MqttConfig(
            host=host,
            port=port,
            tls=tls,
            tls_ca_file=self.mqtt_tls_ca_file,
            client_id=client_id,
            username=self.mqtt_username or url_user,
            password=password,
            qos=self.mqtt_qos,
            events=TopicTemplate.parse(self.mqtt_events_topic),
            predictions=TopicTemplate.parse(self.mqtt_predictions_topic),
            errors=TopicTemplate.parse(self.mqtt_errors_topic),
            tenant=self.mqtt_tenant,
            model=self.mqtt_model,
            keep_alive_s=self.mqtt_keep_alive_s,
            session_expiry_s=self.mqtt_session_expiry_s,
            receive_maximum=self.mqtt_receive_maximum,
            publish_inflight=self.mqtt_publish_inflight,
            shard=shard,
        )


def broker_address(url: str) -> tuple[bool, str, int, str | None, str | None]:
    """``(tls, host, port, user, password)`` of an mqtt:// or mqtts:// URL."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"mqtt_url is not a valid URL: {exc}") from None
    if parts.scheme not in SCHEMES or not parts.hostname:
        raise ValueError(
            "mqtt_url must be mqtt://host[:port] or mqtts://host[:port] (e.g. mqtt://localhost:1883)"
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("mqtt_url takes no path, query or fragment: mqtt://host[:port]")
    tls, default_port = SCHEMES[parts.scheme]
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    return tls, parts.hostname, port or default_port, user, password


@dataclass(frozen=True)
class MqttConfig:
    """Everything the MQTT consumer needs to connect, subscribe and publish."""

    host: str
    port: int
    tls: bool
    tls_ca_file: Path | None
    client_id: str
    username: str | None
    password: str | None
    qos: int
    events: TopicTemplate
    predictions: TopicTemplate
    errors: TopicTemplate
    tenant: str
    model: str | None
    keep_alive_s: int
    session_expiry_s: int
    receive_maximum: int
    publish_inflight: int
    shard: Shard | None

    def __repr__(self) -> str:  # the password stays out of logs
        return f"MqttConfig({self.host}:{self.port}, client_id={self.client_id!r})"
