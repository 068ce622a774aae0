"""Live feeds on a Redis Cluster: sharded pub/sub (``SSUBSCRIBE`` / ``SPUBLISH``, Redis >= 7).

A stream's live channel carries its hash tag (:func:`service.store.keys.live_channel`), so with
sharded pub/sub the channel lives on the shard that owns the stream's slot: a prediction is
published to that shard only (plain ``PUBLISH`` on a cluster is broadcast to every node), and a
service process subscribes on the shards of the streams its clients watch. redis-py's cluster
pub/sub keeps one connection per shard it needs and moves a channel's subscription when its slot
moves (resharding) or its master fails over (the promoted replica is asked for it), so
subscribers on any service process keep receiving every prediction published after the move.
Delivery stays at most once: what is published while a shard has no master is lost (the state is
not).

:func:`make_live_bus` picks the bus for a Redis URL.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from redis.asyncio.cluster import ClusterNode, RedisCluster

from service.live.bus import LiveBus, MemoryLiveBus, RedisLiveBus
from service.metrics import Metrics
from service.store.redis_cluster import ClusterSeeds, is_cluster_url


class ClusterLiveBus(RedisLiveBus):
    """:class:`~service.live.bus.RedisLiveBus` with sharded pub/sub on a Redis Cluster."""

    SUBSCRIBED = "ssubscribe"
    MESSAGE = "smessage"
    PUBLISH = "SPUBLISH"

    def _make_client(self, url: str, **options: Any) -> Any:
        seeds = ClusterSeeds.parse(url)
        return RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in seeds.nodes],
            username=seeds.username,
            password=seeds.password,
            decode_responses=False,
            **options,
        )

    async def publish_many(self, messages: Sequence[tuple[str, str]]) -> None:
        # One SPUBLISH per message in a pipeline (redis-py groups it per shard): the one-script
        # publish of the base class would run on one node, not on each channel's shard.
        if not messages:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for channel, message in messages:
                pipe.execute_command(self.PUBLISH, channel, message)
            await pipe.execute()

    async def listened(self, channels: Sequence[str]) -> list[bool]:
        # Every message is published on a cluster: PUBSUB SHARDNUMSUB is not redirected (no
        # MOVED), so asked with a stale slot map during a reshard it would answer 0 for a
        # channel whose subscribers moved, and their messages would be skipped, where SPUBLISH
        # follows the redirection and delivers them.
        return [True] * len(channels)

    async def _connect(self) -> None:
        # Per-shard connections open on the first SSUBSCRIBE; here only the slot map is needed.
        await self._redis.initialize()

    async def _send_subscribe(self, channels: list[str]) -> None:
        await self._pubsub.ssubscribe(*channels)

    async def _send_unsubscribe(self, channels: list[str]) -> None:
        await self._pubsub.sunsubscribe(*channels)

    def _connection_channels(self) -> Any:
        return self._pubsub.shard_channels

    async def _next_message(self, timeout: float) -> Any:
        if not self._pubsub.node_pubsub_mapping:  # no shard to read from: don't spin
            await asyncio.sleep(timeout)
            return None
        return await self._pubsub.get_sharded_message(timeout=timeout)


def make_live_bus(redis_url: str | None, metrics: Metrics | None = None) -> LiveBus:
    """The bus for ``redis_url``: sharded pub/sub on a cluster, pub/sub on one Redis, or an
    in-process bus without a URL."""
    if not redis_url:
        return MemoryLiveBus(metrics)
    if is_cluster_url(redis_url):
        return ClusterLiveBus(redis_url, metrics=metrics)
    return RedisLiveBus(redis_url, metrics=metrics)
