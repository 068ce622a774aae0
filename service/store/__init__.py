"""State stores: the :class:`StateStore` protocol, the embedded :class:`MemoryStore`,
:class:`RedisStore` (one server) and :class:`RedisClusterStore`. ``make_store(url)`` picks one
from a (possibly empty) Redis URL."""

from __future__ import annotations

from typing import TYPE_CHECKING

from service.store.base import CasWrite, StateStore, Versioned, ttl_ms
from service.store.memory import MemoryStore
from service.store.partial import PartialStoreError
from service.store.redis import RedisStore
from service.store.redis_cluster import RedisClusterStore, is_cluster_url

if TYPE_CHECKING:  # the metrics module reads the store's record types: no import cycle
    from service.metrics import Metrics


def make_store(
    redis_url: str | None,
    *,
    min_replicas_ack: int = 0,
    replica_ack_timeout_s: float = 1.0,
    metrics: Metrics | None = None,
) -> StateStore:
    """``RedisClusterStore`` for a ``redis+cluster://`` URL, ``RedisStore`` for another URL,
    else a fresh ``MemoryStore``."""
    if not redis_url:
        return MemoryStore()
    if is_cluster_url(redis_url):
        return RedisClusterStore(
            redis_url,
            min_replicas_ack=min_replicas_ack,
            replica_ack_timeout_s=replica_ack_timeout_s,
            metrics=metrics,
        )
    return RedisStore(
        redis_url, min_replicas_ack=min_replicas_ack, replica_ack_timeout_s=replica_ack_timeout_s
    )


__all__ = [
    "CasWrite",
    "MemoryStore",
    "PartialStoreError",
    "RedisClusterStore",
    "RedisStore",
    "StateStore",
    "Versioned",
    "make_store",
    "ttl_ms",
]
