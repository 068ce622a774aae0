"""The Redis state store (``redis.asyncio`` with the hiredis parser when installed).

Data layout: one Redis hash per stream key (see :mod:`service.keys`) with three fields::

    v   the record version, a decimal integer >= 1
    d   the payload (a :mod:`service.codec` record)
    w   the token of the write that produced this version (8 random bytes)

and the key's TTL (PEXPIRE), reset by every write. Loads are ``HMGET v d`` for every key in one
pipeline (one round trip); compare-and-set writes are one ``EVALSHA`` of :data:`CAS_SCRIPT` per
key in one pipeline (one round trip). The script compares ``v`` with the expected version and
sets ``v``, ``d``, ``w`` and the TTL atomically. The write token makes a write idempotent: when
redis-py resends a pipeline after a dropped connection, a write that had in fact landed is
recognised as ours and reported as won instead of as a conflict (which would re-apply events).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, RedisError

from service.store.base import CasWrite, Versioned, ttl_ms

# KEYS[1] key; ARGV: expected version, payload, ttl ms (0: none), write token.
# Returns 1 when the write is applied (or was already applied by this very write), else 0.
CAS_SCRIPT = """
local cur = redis.call('HMGET', KEYS[1], 'v', 'w')
local expected = tonumber(ARGV[1])
if cur[1] then
  local v = tonumber(cur[1])
  if v == expected + 1 and cur[2] == ARGV[4] then return 1 end
  if v ~= expected then return 0 end
elseif expected ~= 0 then
  return 0
end
redis.call('HSET', KEYS[1], 'v', string.format('%d', expected + 1), 'd', ARGV[2], 'w', ARGV[4])
local ttl = tonumber(ARGV[3])
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
else
  redis.call('PERSIST', KEYS[1])
end
return 1
"""


class RedisStore:
    """:class:`~service.store.base.StateStore` on Redis (standalone, or a cluster proxy: every
    key of a stream shares its hash tag)."""

    def __init__(
        self,
        url: str,
        *,
        socket_timeout: float | None = 5.0,
        socket_connect_timeout: float | None = 5.0,
        max_connections: int | None = None,
    ) -> None:
        kwargs: dict[str, Any] = {
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": socket_connect_timeout,
            "decode_responses": False,
        }
        if max_connections is not None:
            kwargs["max_connections"] = max_connections
        self.url = url
        self._redis = aioredis.Redis.from_url(url, **kwargs)
        self._sha: str | None = None

    @property
    def client(self) -> aioredis.Redis:
        return self._redis

    async def load_many(self, keys: Sequence[str]) -> list[Versioned | None]:
        if not keys:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hmget(key, "v", "d")
            replies = await pipe.execute()
        out: list[Versioned | None] = []
        for version, payload in replies:
            if version is None or payload is None:
                out.append(None)
            else:
                out.append(Versioned(int(version), bytes(payload)))
        return out

    async def _load_script(self) -> str:
        self._sha = str(await self._redis.script_load(CAS_SCRIPT))
        return self._sha

    async def _eval_many(self, writes: Sequence[CasWrite], tokens: Sequence[bytes]) -> list[Any]:
        sha = self._sha or await self._load_script()
        async with self._redis.pipeline(transaction=False) as pipe:
            for w, token in zip(writes, tokens, strict=True):
                pipe.evalsha(sha, 1, w.key, w.expected_version, w.payload, ttl_ms(w.ttl_s), token)
            return list(await pipe.execute(raise_on_error=False))

    async def cas_many(self, writes: Sequence[CasWrite]) -> list[bool]:
        if not writes:
            return []
        tokens = [os.urandom(8) for _ in writes]
        replies = await self._eval_many(writes, tokens)
        missing = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]
        if missing:  # the server lost its script cache (restart, SCRIPT FLUSH): load, rerun those
            await self._load_script()
            again = await self._eval_many(
                [writes[i] for i in missing], [tokens[i] for i in missing]
            )
            for i, reply in zip(missing, again, strict=True):
                replies[i] = reply
        for reply in replies:
            if isinstance(reply, BaseException):
                raise reply
        return [int(r) == 1 for r in replies]

    async def delete(self, key: str) -> bool:
        return int(await self._redis.delete(key)) > 0

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except (RedisError, OSError):
            return False

    async def close(self) -> None:
        await self._redis.aclose()
