"""The Redis state store (``redis.asyncio`` with the hiredis parser when installed).

Data layout: one Redis hash per stream key (see :mod:`service.store.keys`) with three fields::

    v   the record version, a decimal integer >= 1
    d   the payload (a :mod:`service.store.record` record)
    w   the token of the write call that produced this version (8 random bytes)

and the key's TTL (PEXPIRE), reset by every write.

One round trip each way per batch, one command each, with a handful of arguments: a batch's
records are loaded by one ``EVALSHA`` of :data:`LOAD_SCRIPT` over all its keys, and every
compare-and-set of the batch is one ``EVALSHA`` of :data:`CAS_SCRIPT` over all its keys (their
versions, TTLs and payloads packed into two arguments), which answers won/lost per key. One
command instead of one per key matters because redis-py packs and parses every command in
Python: at batch 256 that, not the network, was the cost. Both scripts take any subset of keys;
on a Redis Cluster (:mod:`service.store.redis_cluster`) a batch is sent as one call per hash
slot, grouped in one pipeline per node; here the server is standalone and a batch is one call.

The write token makes a call idempotent: when redis-py resends a command after a dropped
connection, a write that had in fact landed is recognised as this call's (``v`` is one past the
expected version and ``w`` is the token) and reported as won instead of as a conflict, which
would re-apply events. A server that lost its script cache (restart, ``SCRIPT FLUSH``) answers
``NOSCRIPT``; redis-py's script object then loads the script and sends the call again.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from service.store.base import CasWrite, Versioned, ttl_ms

# Each script is a body after a prelude. The bodies read their keys from KEYS and their
# arguments from ARGV past ``off``. The plain prelude takes the keys as declared keys (one
# Redis; on a cluster, keys of one slot). The cross-slot prelude takes them from ARGV with no
# declared key (ARGV[1] = n, then n keys, then the arguments), for one call per cluster node
# over keys of many slots: Redis >= 7 checks every key the script touches and fails the call
# ("non local key", a migrating slot) rather than touch a key the node does not own.
_PRELUDE = "local off = 0\n"
_CROSS_SLOT_PRELUDE = """#!lua flags=allow-cross-slot-keys
local n = tonumber(ARGV[1])
local KEYS = {}
for i = 1, n do KEYS[i] = ARGV[1 + i] end
local off = n + 1
"""

# Returns, per key, {v, d} (nil fields where the key is absent).
_LOAD_BODY = """
local out = {}
for i, key in ipairs(KEYS) do
  out[i] = redis.call('HMGET', key, 'v', 'd')
end
return out
"""

# ARGV[off + 1]: the write token of this call; ARGV[off + 2]: per key i, packed little-endian:
# u64 expected version (0: absent), u64 TTL ms (0: none), u32 payload length; ARGV[off + 3]: the
# payloads, concatenated. (Three arguments whatever the batch: redis-py packs each argument in
# Python, which at batch 256 cost more than the script.) Returns, per key, 1 when the write is
# applied (or was already applied by this very call), else 0. Keys are handled in order, so a
# key listed twice sees the first write's outcome.
_CAS_BODY = """
local token = ARGV[off + 1]
local heads = ARGV[off + 2]
local payloads = ARGV[off + 3]
local hpos, ppos = 1, 1
local won = {}
for i, key in ipairs(KEYS) do
  local expected, ttl, size
  expected, ttl, size, hpos = struct.unpack('<I8I8I4', heads, hpos)
  local payload = string.sub(payloads, ppos, ppos + size - 1)
  ppos = ppos + size
  local cur = redis.call('HMGET', key, 'v', 'w')
  local apply = false
  won[i] = 0
  if cur[1] then
    local v = tonumber(cur[1])
    if v == expected + 1 and cur[2] == token then
      won[i] = 1
    elseif v == expected then
      apply = true
    end
  elseif expected == 0 then
    apply = true
  end
  if apply then
    redis.call('HSET', key, 'v', string.format('%d', expected + 1), 'd', payload, 'w', token)
    if ttl > 0 then
      redis.call('PEXPIRE', key, ttl)
    else
      redis.call('PERSIST', key)
    end
    won[i] = 1
  end
end
return won
"""

_CAS_HEAD = struct.Struct("<QQI")  # expected version, TTL ms, payload length (CAS_SCRIPT)

LOAD_SCRIPT = _PRELUDE + _LOAD_BODY
CAS_SCRIPT = _PRELUDE + _CAS_BODY
CROSS_SLOT_LOAD_SCRIPT = _CROSS_SLOT_PRELUDE + _LOAD_BODY
CROSS_SLOT_CAS_SCRIPT = _CROSS_SLOT_PRELUDE + _CAS_BODY


def loaded_records(replies: Sequence[Any]) -> list[Versioned | None]:
    """The records in the reply of :data:`LOAD_SCRIPT` (``None`` where absent)."""
    out: list[Versioned | None] = []
    for version, payload in replies:
        if version is None or payload is None:
            out.append(None)
        else:
            out.append(Versioned(int(version), bytes(payload)))
    return out


def cas_args(writes: Sequence[CasWrite], token: bytes) -> list[Any]:
    """ARGV of :data:`CAS_SCRIPT` for ``writes`` (KEYS: their keys, in order)."""
    return [token, *cas_key_args(writes)]


def cas_key_args(writes: Sequence[CasWrite]) -> list[Any]:
    """The arguments of :data:`CAS_SCRIPT` after the token for ``writes``, in order: their heads
    and their payloads, each packed into one argument."""
    heads = b"".join(
        _CAS_HEAD.pack(w.expected_version, ttl_ms(w.ttl_s), len(w.payload)) for w in writes
    )
    return [heads, b"".join(w.payload for w in writes)]


def cas_outcomes(replies: Sequence[Any]) -> list[bool]:
    """Won/lost per key from the reply of :data:`CAS_SCRIPT`."""
    return [int(r) == 1 for r in replies]


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
        min_replicas_ack: int = 0,
        replica_ack_timeout_s: float = 1.0,
    ) -> None:
        kwargs: dict[str, Any] = {
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": socket_connect_timeout,
            "decode_responses": False,
        }
        if max_connections is not None:
            kwargs["max_connections"] = max_connections
        self.url = url
        self.min_replicas_ack = min_replicas_ack
        self._wait_ms = max(1, round(replica_ack_timeout_s * 1000))
        self._redis = aioredis.Redis.from_url(url, **kwargs)
        self._load = self._redis.register_script(LOAD_SCRIPT)
        self._cas = self._redis.register_script(CAS_SCRIPT)

    @property
    def client(self) -> aioredis.Redis:
        return self._redis

    async def load_many(self, keys: Sequence[str]) -> list[Versioned | None]:
        if not keys:
            return []
        return loaded_records(await self._load(keys=list(keys)))

    async def cas_group(self, writes: Sequence[CasWrite], token: bytes) -> list[bool]:
        """Compare-and-set ``writes`` in one script call identified by ``token``; a call sent
        again with the same token reports the writes it had applied as won."""
        keys, args = [w.key for w in writes], cas_args(writes, token)
        if self.min_replicas_ack <= 0:
            return cas_outcomes(await self._cas(keys=keys, args=args))
        # WAIT counts the replicas that have this connection's writes: same pipeline.
        async with self._redis.pipeline(transaction=False) as pipe:
            await self._cas(keys=keys, args=args, client=pipe)
            pipe.execute_command("WAIT", self.min_replicas_ack, self._wait_ms)
            replies, acks = await pipe.execute()
        if int(acks) < self.min_replicas_ack:
            raise RedisConnectionError(
                f"{int(acks)} of {self.min_replicas_ack} replicas acknowledged the writes within "
                f"{self._wait_ms} ms; they are not acknowledged (a retry is a duplicate)"
            )
        return cas_outcomes(replies)

    async def cas_many(self, writes: Sequence[CasWrite]) -> list[bool]:
        if not writes:
            return []
        return await self.cas_group(writes, os.urandom(8))

    async def delete(self, key: str) -> bool:
        return int(await self._redis.delete(key)) > 0

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except (RedisError, OSError):
            return False

    async def close(self) -> None:
        await self._redis.aclose()
