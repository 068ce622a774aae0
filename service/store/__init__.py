"""State stores: the :class:`StateStore` protocol, the embedded :class:`MemoryStore` and
:class:`RedisStore`. ``make_store(url)`` picks one from a (possibly empty) Redis URL."""

from __future__ import annotations

from service.store.base import CasWrite, StateStore, Versioned, ttl_ms
from service.store.memory import MemoryStore
from service.store.redis import RedisStore


def make_store(redis_url: str | None) -> StateStore:
    """``RedisStore(redis_url)`` when a URL is given, else a fresh ``MemoryStore``."""
    return RedisStore(redis_url) if redis_url else MemoryStore()


__all__ = [
    "CasWrite",
    "MemoryStore",
    "RedisStore",
    "StateStore",
    "Versioned",
    "make_store",
    "ttl_ms",
]
