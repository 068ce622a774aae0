"""Static sharding of streams over replicas: ``K/N`` owns the streams whose stable hash mod N
is K.

Every replica subscribes to every event; each applies only its own streams and acknowledges
the others untouched, so one stream's events are applied by one replica, in order. The hash
is of ``tenant/stream_id`` (BLAKE2b, the same in every process and release: Python's ``hash``
is salted per process and would split a stream between replicas).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

_SPEC = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


def stream_hash(tenant: str, stream_id: str) -> int:
    """A 64-bit hash of the stream, stable across processes, machines and releases."""
    digest = hashlib.blake2b(f"{tenant}/{stream_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


@dataclass(frozen=True)
class Shard:
    index: int
    count: int

    def __post_init__(self) -> None:
        if not (self.count >= 1 and 0 <= self.index < self.count):
            raise ValueError(
                f"a shard is K/N with 0 <= K < N (e.g. 0/2 and 1/2); got {self.index}/{self.count}"
            )

    @classmethod
    def parse(cls, text: str) -> Shard:
        match = _SPEC.match(text)
        if match is None:
            raise ValueError(f"a shard is 'K/N' (e.g. '0/2'); got {text!r}")
        return cls(int(match.group(1)), int(match.group(2)))

    def owns(self, tenant: str, stream_id: str) -> bool:
        return stream_hash(tenant, stream_id) % self.count == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"
