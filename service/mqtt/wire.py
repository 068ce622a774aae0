"""What a client shares with the MQTT consumer, importable without loading the server: the
SenML content type and the id the service derives for an event that carries none."""

from __future__ import annotations

import hashlib

SENML_CONTENT_TYPE = "application/senml+json"


def derived_id(topic: str, payload: bytes, index: int) -> str:
    """``mqtt:<BLAKE2b of topic and payload>.<index of the event in the message>``: a
    redelivery carries the same bytes, so it gets the same id."""
    digest = hashlib.blake2b(topic.encode() + b"\0" + payload, digest_size=12).hexdigest()
    return f"mqtt:{digest}.{index}"
