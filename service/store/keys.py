"""Redis key and channel names. Every name of one stream carries the stream id as its hash tag
(``{stream_id}``), so all of a stream's keys and channels map to one Redis Cluster slot.

    state   liquid:s:<tenant>:<model>:{<stream_id>}
    live    liquid:live:<tenant>:{<stream_id>}

Tenant and model names may not contain ``:`` (it would make two (tenant, model) pairs spell the
same key), braces (they would move the hash tag) or whitespace. A stream id may contain ``:``
(it is last, inside the braces) but no braces or whitespace; the API validates it first, and
these checks keep a bad name from ever reaching Redis.
"""

from __future__ import annotations

import re
from functools import lru_cache

PREFIX = "liquid"

_NAME = re.compile(r"[^\s:{}]+")
_STREAM = re.compile(r"[^\s{}]+")


def _check(value: str, pattern: re.Pattern[str], what: str, forbidden: str) -> str:
    if not isinstance(value, str) or pattern.fullmatch(value) is None:
        raise ValueError(f"{what} must be a non-empty string without {forbidden}; got {value!r}")
    return value


def _name(value: str, what: str) -> str:
    return _check(value, _NAME, what, "':', braces or whitespace")


def _stream(value: str) -> str:
    return _check(value, _STREAM, "stream id", "braces or whitespace")


# Names are checked once and remembered: the hot path asks for the same streams' names batch
# after batch (bounded, so a flood of new stream ids costs only re-checking).
@lru_cache(maxsize=1 << 16)
def state_key(tenant: str, model_name: str, stream_id: str) -> str:
    """The key of one stream's state for one model."""
    return (
        f"{PREFIX}:s:{_name(tenant, 'tenant')}:{_name(model_name, 'model name')}:"
        f"{{{_stream(stream_id)}}}"
    )


@lru_cache(maxsize=1 << 16)
def live_channel(tenant: str, stream_id: str) -> str:
    """The pub/sub channel of one stream's live predictions (all models)."""
    return f"{PREFIX}:live:{_name(tenant, 'tenant')}:{{{_stream(stream_id)}}}"


def _crc16(data: bytes) -> int:
    """CRC-16/XMODEM, the checksum Redis Cluster uses for key slots."""
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def hash_slot(key: str | bytes) -> int:
    """The Redis Cluster slot of ``key`` (honouring a ``{...}`` hash tag, as Redis does)."""
    raw = key.encode("utf-8") if isinstance(key, str) else key
    start = raw.find(b"{")
    if start != -1:
        end = raw.find(b"}", start + 1)
        if end > start + 1:
            raw = raw[start + 1 : end]
    return _crc16(raw) % 16384
