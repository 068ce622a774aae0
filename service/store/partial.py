"""A store call that reached only part of the store (some nodes of a Redis Cluster answered,
others did not): what is known per key, so that only the affected events fail."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError


class PartialStoreError(RedisConnectionError):
    """``results[i]`` is the answer for the call's i-th key, or ``None`` where ``i`` is in
    ``failed``: that key's node did not answer (or not in time), so its outcome is unknown.

    A store-down error: whoever does not look at ``results`` answers the whole call 503
    ``unavailable`` with Retry-After, which is always safe (a write whose outcome is unknown is
    never acknowledged; a retried event is recognised as a duplicate)."""

    def __init__(self, message: str, results: Sequence[Any], failed: set[int]) -> None:
        super().__init__(message)
        self.failed = frozenset(failed)
        self.results = [None if i in self.failed else r for i, r in enumerate(results)]
