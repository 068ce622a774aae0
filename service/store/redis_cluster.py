"""The state store on a Redis Cluster (``redis+cluster://host:port[,host:port...]``).

Same script bodies and data layout as :mod:`service.store.redis` (one piece of code per idea);
what differs is how a batch reaches the cluster. Every stream is its own hash slot (its keys
carry ``{stream_id}``), so a batch spans many slots, and a cluster refuses a script whose
declared keys span slots. So:

- fast path: one script call per master over all the batch's keys it owns, all masters in
  parallel (one round trip each way per batch). The keys travel in ARGV and the script is
  flagged ``allow-cross-slot-keys`` (Redis >= 7): the node checks every key the script
  touches and fails the call rather than touch a key of a slot it does not own (moved away,
  or being migrated: the key may already be on the target);
- fallback, for the calls of a master whose call failed (a reshard or failover under way, a
  node down, a stale slot map): one call per slot with declared keys, pipelined per node; a
  ``MOVED`` (slot moved, replica promoted) or ``ASK`` (slot migrating) reply is counted in
  ``liquid_state_store_redirects_total{kind}`` and the call is sent again alone through the
  cluster client, which follows the redirection and updates its slot map.

A node without the script (``NOSCRIPT``: a promoted replica) is sent its text. Every resend is
safe: a load reads, and a compare-and-set carries the call's write token, so a write that had
landed (a failed cross-slot call may have applied some of its keys) is reported as won, never
applied twice.

A node that does not answer fails only its own keys: :class:`PartialStoreError` names the keys
whose outcome is unknown, the engine answers those events 503 (Retry-After) and commits the
rest. Nothing whose outcome is unknown is acknowledged.

``min_replicas_ack`` (N > 0): after the writes, each node that took some sends one small write
on a key of a written slot and then ``WAIT N timeout`` on the same connection; replication is
one ordered stream per master, so N replicas acknowledging the probe have every earlier write
of that node. A node whose WAIT counts fewer than N fails its writes (503): they are applied on
the master but not acknowledged, and a retry is answered as a duplicate.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.exceptions import AskError, MovedError, NoScriptError, RedisError

from service.store.base import CasWrite, Versioned
from service.store.keys import hash_slot
from service.store.partial import PartialStoreError

if TYPE_CHECKING:  # the metrics module reads the store's record types: no import cycle
    from service.metrics import Metrics
from service.store.redis import (
    CAS_SCRIPT,
    CROSS_SLOT_CAS_SCRIPT,
    CROSS_SLOT_LOAD_SCRIPT,
    LOAD_SCRIPT,
    cas_key_args,
    cas_outcomes,
    loaded_records,
)

SCHEME = "redis+cluster"
SLOTS = 16384
# The probe written before WAIT lives one second; its hash tag puts it in a written slot.
ACK_PROBE_PREFIX = "liquid:ack:"
ACK_PROBE_TTL_MS = 1000
# Calls resent one at a time (redirected, NOSCRIPT) in flight at once: each holds a connection.
RESEND_CONCURRENCY = 16


def is_cluster_url(url: str | None) -> bool:
    return bool(url) and str(url).startswith(f"{SCHEME}://")


@dataclass(frozen=True)
class ClusterSeeds:
    """What a ``redis+cluster://[user:password@]host:port[,host:port...]`` URL names."""

    nodes: tuple[tuple[str, int], ...]
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> ClusterSeeds:
        if not is_cluster_url(url):
            raise ValueError(f"a cluster URL starts with {SCHEME}://; got {url!r}")
        rest = url[len(SCHEME) + 3 :]
        userinfo, _, hosts = rest.rpartition("@")
        hosts = hosts.split("/", 1)[0].split("?", 1)[0]
        nodes = []
        for part in hosts.split(","):
            parsed = urlsplit(f"//{part.strip()}")
            if not parsed.hostname:
                raise ValueError(f"cluster URL {url!r}: {part!r} is not host:port")
            nodes.append((parsed.hostname, parsed.port or 6379))
        username = password = None
        if userinfo:
            user, sep, secret = userinfo.partition(":")
            username = unquote(user) or None
            password = unquote(secret) if sep else None
        return cls(tuple(nodes), username, password)


def ack_probe_key(key: str) -> str:
    """A key in the slot of ``key`` (its ``{hash tag}``), written before ``WAIT``."""
    start = key.find("{")
    return ACK_PROBE_PREFIX + (key[start:] if start != -1 else f"{{{key}}}")


@dataclass
class _Call:
    """The keys of one slot, with the indexes they had in the batch and their per-key script
    arguments; ``reply`` is the script's answer for them (or the error that failed them)."""

    indexes: list[int]
    keys: list[str]
    args: list[Any]
    reply: Any = None


def _slot_calls(keys: Sequence[str], args_of: Any) -> list[_Call]:
    """One call per hash slot, keys in their batch order (a key listed twice stays in order)."""
    by_slot: dict[int, list[int]] = {}
    for i, key in enumerate(keys):
        by_slot.setdefault(hash_slot(key), []).append(i)
    return [_Call(idx, [keys[i] for i in idx], args_of(idx)) for idx in by_slot.values()]


class RedisClusterStore:
    """:class:`~service.store.base.StateStore` on a Redis Cluster (see the module doc)."""

    def __init__(
        self,
        url: str,
        *,
        min_replicas_ack: int = 0,
        replica_ack_timeout_s: float = 1.0,
        socket_timeout: float | None = 5.0,
        socket_connect_timeout: float | None = 5.0,
        metrics: Metrics | None = None,
    ) -> None:
        if min_replicas_ack < 0:
            raise ValueError(f"min_replicas_ack must be >= 0; got {min_replicas_ack}")
        if not replica_ack_timeout_s > 0:
            raise ValueError(f"replica_ack_timeout_s must be > 0; got {replica_ack_timeout_s}")
        seeds = ClusterSeeds.parse(url)
        self.url = url
        self.min_replicas_ack = min_replicas_ack
        self._wait_ms = max(1, round(replica_ack_timeout_s * 1000))
        self._metrics = metrics
        self._cluster = RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in seeds.nodes],
            username=seeds.username,
            password=seeds.password,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_connect_timeout,
            decode_responses=False,
            require_full_coverage=True,
        )
        self._scripts = {
            script: hashlib.sha1(script.encode()).hexdigest()
            for script in (LOAD_SCRIPT, CAS_SCRIPT, CROSS_SLOT_LOAD_SCRIPT, CROSS_SLOT_CAS_SCRIPT)
        }

    @property
    def client(self) -> RedisCluster:
        return self._cluster

    # --- the StateStore contract ------------------------------------------------------------

    async def load_many(self, keys: Sequence[str]) -> list[Versioned | None]:
        if not keys:
            return []
        calls = _slot_calls(keys, lambda idx: [])
        await self._run("load", (LOAD_SCRIPT, CROSS_SLOT_LOAD_SCRIPT), [], calls)
        results: list[Versioned | None] = [None] * len(keys)
        for call in calls:
            if not isinstance(call.reply, BaseException):
                for i, record in zip(call.indexes, loaded_records(call.reply), strict=True):
                    results[i] = record
        _raise_failed(calls, len(keys), results, "records could not be loaded")
        return results

    async def cas_many(self, writes: Sequence[CasWrite]) -> list[bool]:
        if not writes:
            return []
        token = os.urandom(8)
        calls = _slot_calls(
            [w.key for w in writes], lambda idx: cas_key_args([writes[i] for i in idx])
        )
        await self._run("save", (CAS_SCRIPT, CROSS_SLOT_CAS_SCRIPT), [token], calls)
        if self.min_replicas_ack > 0:
            await self._wait_for_replicas([c for c in calls if _wrote(c)])
        outcomes: list[bool | None] = [None] * len(writes)
        for call in calls:
            if not isinstance(call.reply, BaseException):
                for i, won in zip(call.indexes, cas_outcomes(call.reply), strict=True):
                    outcomes[i] = won
        _raise_failed(calls, len(writes), outcomes, "writes have an unknown outcome")
        return [bool(o) for o in outcomes]

    async def delete(self, key: str) -> bool:
        return int(await self._cluster.delete(key)) > 0

    async def ping(self) -> bool:
        """``True`` when every master answers, says ``cluster_state:ok`` and every slot is ok."""
        try:
            infos = await self.cluster_infos()
        except (RedisError, OSError):
            return False
        return bool(infos) and all(
            info.get("cluster_state") == "ok" and info.get("cluster_slots_ok") == str(SLOTS)
            for info in infos
        )

    async def cluster_infos(self) -> list[dict[str, str]]:
        """``CLUSTER INFO`` of every master, parsed."""
        await self._initialized()
        masters = self._cluster.get_primaries()
        replies = await asyncio.gather(
            *(self._cluster.execute_command("CLUSTER INFO", target_nodes=n) for n in masters)
        )
        return [_parse_info(r) for r in replies]

    async def close(self) -> None:
        await self._cluster.aclose()

    # --- sending ----------------------------------------------------------------------------

    async def _initialized(self) -> None:
        """Fetch the slot map once (the client does it lazily on its first command)."""
        if self._cluster._initialize:
            await self._cluster.initialize()

    def _node_of(self, key: str) -> ClusterNode | None:
        """The master of ``key``'s slot in the client's slot map; ``None`` if uncovered."""
        try:
            return self._cluster.get_node_from_key(key)
        except RedisError:
            return None

    async def _run(
        self, op: str, scripts: tuple[str, str], head: list[Any], calls: list[_Call]
    ) -> None:
        """Set each call's reply (or the error that failed it): one cross-slot script call per
        node, all nodes in parallel; the calls of a node whose call failed (a slot moving or
        moved, a failover, a node down) go again one per slot, redirections followed."""
        per_slot, cross_slot = scripts
        try:
            await self._initialized()
        except (RedisError, OSError) as exc:
            for call in calls:
                call.reply = exc
            return
        by_node: dict[str, tuple[ClusterNode, list[_Call]]] = {}
        again: list[_Call] = []
        for call in calls:
            node = self._node_of(call.keys[0])
            if node is None:
                again.append(call)
            else:
                by_node.setdefault(node.name, (node, []))[1].append(call)

        async def one_node(node: ClusterNode, node_calls: list[_Call]) -> None:
            keys = [k for c in node_calls for k in c.keys]
            # a call's arguments are packed per key (CAS: heads, payloads): concatenated
            # element-wise, in the calls' order, they describe the node's keys in order
            packed = [b"".join(parts) for parts in zip(*(c.args for c in node_calls), strict=True)]
            argv = [len(keys), *keys, *head, *packed]
            t0 = time.perf_counter()
            try:
                replies = await self._eval(cross_slot, [], argv, target_nodes=node)
            except (RedisError, OSError):
                self._count_retry("per_slot")
                again.extend(node_calls)
                return
            finally:
                self._observe(op, "primary", t0)
            start = 0
            for call in node_calls:
                call.reply = replies[start : start + len(call.keys)]
                start += len(call.keys)

        await asyncio.gather(*(one_node(n, c) for n, c in by_node.values()))
        if again:
            await self._run_per_slot(op, per_slot, head, again)

    async def _eval(self, script: str, keys: list[str], args: list[Any], **options: Any) -> Any:
        """``EVALSHA`` of ``script``; ``EVAL`` (its text) where the node lacks it."""
        try:
            return await self._cluster.execute_command(
                "EVALSHA", self._scripts[script], len(keys), *keys, *args, **options
            )
        except NoScriptError as exc:
            self._count_redirect(exc)
        return await self._cluster.execute_command(
            "EVAL", script, len(keys), *keys, *args, **options
        )

    async def _run_per_slot(
        self, op: str, script: str, head: list[Any], calls: list[_Call]
    ) -> None:
        """One script call per slot (declared keys: the cluster routes and redirects them),
        one pipeline per node, in parallel; redirected calls are sent again alone."""
        sha = self._scripts[script]
        by_node: dict[str, list[_Call]] = {}
        for call in calls:
            node = self._node_of(call.keys[0])
            by_node.setdefault(node.name if node else "", []).append(call)

        async def one_node(node_calls: list[_Call]) -> None:
            pipe = self._cluster.pipeline()
            for c in node_calls:
                pipe.execute_command("EVALSHA", sha, len(c.keys), *c.keys, *head, *c.args)
            t0 = time.perf_counter()
            try:
                replies = await pipe.execute(raise_on_error=False, allow_redirections=False)
            except (RedisError, OSError) as exc:
                replies = [exc] * len(node_calls)
            finally:
                self._observe(op, "primary", t0)
            for call, reply in zip(node_calls, replies, strict=True):
                call.reply = reply

        await asyncio.gather(*(one_node(c) for c in by_node.values()))
        redirected = [c for c in calls if isinstance(c.reply, (AskError, NoScriptError))]
        if not redirected:
            return
        for call in redirected:
            self._count_redirect(call.reply)
        limit = asyncio.Semaphore(RESEND_CONCURRENCY)  # each resend holds a connection

        async def resend(call: _Call) -> None:
            async with limit:
                try:  # the client follows MOVED / ASK, retries TRYAGAIN / CLUSTERDOWN
                    call.reply = await self._eval(script, call.keys, [*head, *call.args])
                except (RedisError, OSError) as exc:
                    call.reply = exc

        await asyncio.gather(*(resend(c) for c in redirected))

    async def _wait_for_replicas(self, calls: list[_Call]) -> None:
        """Fail (set the reply of) every call whose node does not get ``min_replicas_ack``
        replica acknowledgements within the timeout."""
        by_node: dict[str, tuple[ClusterNode, list[_Call]]] = {}
        for call in calls:
            node = self._node_of(call.keys[0])
            if node is None:
                call.reply = RedisError("no node serves the slot of a written key")
                continue
            by_node.setdefault(node.name, (node, []))[1].append(call)

        async def one_node(node: ClusterNode, node_calls: list[_Call]) -> None:
            # Both on this node's one connection: WAIT counts the replicas that have what this
            # connection wrote (a node that lost the slot meanwhile answers MOVED: a failure).
            pipe = self._cluster.pipeline()
            probe_key = ack_probe_key(node_calls[0].keys[0])
            pipe.execute_command("SET", probe_key, b"1", "PX", ACK_PROBE_TTL_MS, target_nodes=node)
            pipe.execute_command("WAIT", self.min_replicas_ack, self._wait_ms, target_nodes=node)
            t0 = time.perf_counter()
            try:
                probe, acks = await pipe.execute(raise_on_error=False, allow_redirections=False)
            except (RedisError, OSError) as exc:
                probe, acks = exc, exc
            finally:
                self._observe("save", "replica", t0)
            if isinstance(probe, BaseException) or isinstance(acks, BaseException):
                error = probe if isinstance(probe, BaseException) else acks
            elif int(acks) < self.min_replicas_ack:
                error = RedisError(
                    f"{int(acks)} of {self.min_replicas_ack} replicas acknowledged the writes "
                    f"within {self._wait_ms} ms"
                )
            else:
                return
            self._count_retry("replica_ack")
            for call in node_calls:
                call.reply = error

        await asyncio.gather(*(one_node(n, c) for n, c in by_node.values()))

    # --- metrics ----------------------------------------------------------------------------

    def _observe(self, op: str, role: str, t0: float) -> None:
        if self._metrics is not None:
            self._metrics.store_node_seconds.labels(op=op, role=role).observe(
                time.perf_counter() - t0
            )

    def _count_redirect(self, reply: BaseException) -> None:
        if self._metrics is None:
            return
        if isinstance(reply, NoScriptError):
            self._metrics.store_retries.labels(reason="noscript").inc()
            return
        kind = "moved" if isinstance(reply, MovedError) else "ask"  # MovedError is an AskError
        self._metrics.store_redirects.labels(kind=kind).inc()
        self._metrics.store_retries.labels(reason=kind).inc()

    def _count_retry(self, reason: str) -> None:
        if self._metrics is not None:
            self._metrics.store_retries.labels(reason=reason).inc()


def _wrote(call: _Call) -> bool:
    return not isinstance(call.reply, BaseException) and any(cas_outcomes(call.reply))


def _raise_failed(calls: list[_Call], total: int, results: list[Any], what: str) -> None:
    """:class:`PartialStoreError` naming the keys of the calls that failed, if any did."""
    failed = {i for c in calls if isinstance(c.reply, BaseException) for i in c.indexes}
    if failed:
        error = next(c.reply for c in calls if isinstance(c.reply, BaseException))
        raise PartialStoreError(f"{len(failed)} of {total} {what}: {error!r}", results, failed)


def _parse_info(raw: Any) -> dict[str, str]:
    if isinstance(raw, dict):  # redis-py parses CLUSTER INFO already
        return {str(k): str(v) for k, v in raw.items()}
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    return dict(line.split(":", 1) for line in text.split() if ":" in line)
