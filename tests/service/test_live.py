"""Live feeds: fan-out, bounded subscriber buffers, and Redis pub/sub across processes
(two buses on the harness's private redis-server stand for two replicas)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from service.live.bus import LiveBus, MemoryLiveBus, RedisLiveBus, Subscription
from service.metrics import Metrics
from tests.redis_process import private_redis

pytestmark = pytest.mark.anyio


async def receive(sub: Subscription, n: int, timeout: float = 2.0) -> list[str]:
    async def take() -> list[str]:
        return [await sub.get() for _ in range(n)]

    return await asyncio.wait_for(take(), timeout)


async def nothing_more(sub: Subscription, wait: float = 0.05) -> bool:
    await asyncio.sleep(wait)
    return len(sub) == 0


# --- in-process bus ---------------------------------------------------------------------------


async def test_memory_fan_out_to_every_subscriber_of_the_channel() -> None:
    bus = MemoryLiveBus()
    a, b = bus.subscribe("ch1"), bus.subscribe("ch1")
    other = bus.subscribe("ch2")
    await a.ready()
    await bus.publish("ch1", "m1")
    await bus.publish_many([("ch1", "m2"), ("ch2", "z"), ("nobody", "x")])
    assert await receive(a, 2) == ["m1", "m2"]
    assert await receive(b, 2) == ["m1", "m2"]
    assert await receive(other, 1) == ["z"]
    assert bus.subscriber_count("ch1") == 2
    a.close()
    assert bus.subscriber_count("ch1") == 1
    await bus.close()
    assert bus.subscriber_count("ch1") == 0


async def test_close_ends_iteration() -> None:
    bus = MemoryLiveBus()
    sub = bus.subscribe("c")

    async def collect() -> list[str]:
        return [m async for m in sub]

    task = asyncio.create_task(collect())
    await bus.publish("c", "one")
    await asyncio.sleep(0.01)
    sub.close()
    assert await asyncio.wait_for(task, 1.0) == ["one"]
    sub.close()  # idempotent
    await bus.publish("c", "after")  # nobody left; nothing kept
    assert len(sub) == 0


async def test_slow_subscriber_drops_the_oldest_and_counts() -> None:
    metrics = Metrics()
    bus = MemoryLiveBus(metrics)
    slow = bus.subscribe("c", maxsize=3)
    fast = bus.subscribe("c", maxsize=100)
    for i in range(10):
        await bus.publish("c", f"m{i}")
    assert len(slow) == 3  # memory bounded by maxsize
    assert await receive(slow, 3) == ["m7", "m8", "m9"]  # the newest survive
    assert slow.dropped == 7
    assert len(await receive(fast, 10)) == 10
    assert metrics.registry.get_sample_value("liquid_live_messages_dropped_total") == 7


async def test_subscription_as_context_manager_and_validation() -> None:
    bus = MemoryLiveBus()
    async with bus.subscribe("c") as sub:
        await bus.publish("c", "x")
        assert sub.get_nowait() == "x"
        assert sub.get_nowait() is None
    assert sub.closed
    assert bus.subscriber_count("c") == 0
    with pytest.raises(ValueError, match="maxsize"):
        bus.subscribe("c", maxsize=0)
    assert isinstance(bus, LiveBus)


# --- Redis pub/sub ------------------------------------------------------------------------------


@pytest.fixture
async def redis_buses(
    anyio_backend: str, redis_url: str
) -> AsyncIterator[Callable[..., RedisLiveBus]]:
    made: list[RedisLiveBus] = []

    def make(metrics: Metrics | None = None) -> RedisLiveBus:
        bus = RedisLiveBus(redis_url, metrics=metrics)
        made.append(bus)
        return bus

    yield make
    for bus in made:
        await bus.close()


async def numsub(redis_url: str, channel: str) -> int:
    raw = aioredis.Redis.from_url(redis_url)
    try:
        ((_, n),) = await raw.pubsub_numsub(channel)
        return int(n)
    finally:
        await raw.aclose()


@pytest.mark.integration
async def test_redis_messages_reach_subscribers_of_another_bus(
    redis_buses: Callable[..., RedisLiveBus], redis_url: str
) -> None:
    replica_a, replica_b = redis_buses(), redis_buses()
    on_a = replica_a.subscribe("liquid:live:t:{s1}")
    on_b1 = replica_b.subscribe("liquid:live:t:{s1}")
    on_b2 = replica_b.subscribe("liquid:live:t:{s1}")
    elsewhere = replica_b.subscribe("liquid:live:t:{s2}")
    for sub in (on_a, on_b1, on_b2, elsewhere):
        await asyncio.wait_for(sub.ready(), 2.0)
    # one Redis subscription per process, however many local subscribers
    assert await numsub(redis_url, "liquid:live:t:{s1}") == 2
    await replica_a.publish("liquid:live:t:{s1}", "from a")
    await replica_b.publish_many([("liquid:live:t:{s1}", "from b"), ("liquid:live:t:{s2}", "z")])
    for sub in (on_a, on_b1, on_b2):
        assert await receive(sub, 2) == ["from a", "from b"]
    assert await receive(elsewhere, 1) == ["z"]
    assert await nothing_more(on_a)


async def test_memory_listened_says_which_channels_have_subscribers() -> None:
    bus = MemoryLiveBus()
    sub = bus.subscribe("heard")
    assert await bus.listened(["heard", "silent", "heard"]) == [True, False, True]
    sub.close()
    assert await bus.listened(["heard"]) == [False]
    assert await bus.listened([]) == []


@pytest.mark.integration
async def test_redis_listened_counts_subscribers_of_every_process(
    redis_buses: Callable[..., RedisLiveBus],
) -> None:
    publisher, watcher = redis_buses(), redis_buses()
    heard = "liquid:live:t:{heard}"
    sub = watcher.subscribe(heard)
    await asyncio.wait_for(sub.ready(), 2.0)  # confirmed by Redis: counted from now on
    assert await publisher.listened([heard, "liquid:live:t:{silent}"]) == [True, False]
    sub.close()
    for _ in range(200):  # the unsubscribe is sent by the watcher's control task
        if await publisher.listened([heard]) == [False]:
            break
        await asyncio.sleep(0.01)
    assert await publisher.listened([heard]) == [False]


@pytest.mark.integration
async def test_redis_publish_many_keeps_order_and_text(
    redis_buses: Callable[..., RedisLiveBus],
) -> None:
    """One script call carries a batch: every message, in order, byte for byte."""
    publisher, watcher = redis_buses(), redis_buses()
    channels = ["liquid:live:t:{a}", "liquid:live:t:{b:c}"]
    subs = [watcher.subscribe(c) for c in channels]
    for sub in subs:
        await asyncio.wait_for(sub.ready(), 2.0)
    texts = ["", "plain", 'quote " and \\ backslash', "caf\u00e9 \u2603", "x" * 70000]
    await publisher.publish_many([(channels[i % 2], t) for i, t in enumerate(texts)])
    assert await receive(subs[0], 3) == texts[0::2]
    assert await receive(subs[1], 2) == texts[1::2]


@pytest.mark.integration
async def test_redis_unsubscribes_when_the_last_local_subscriber_leaves(
    redis_buses: Callable[..., RedisLiveBus], redis_url: str
) -> None:
    bus = redis_buses()
    channel = "liquid:live:t:{s}"
    first, second = bus.subscribe(channel), bus.subscribe(channel)
    await asyncio.wait_for(first.ready(), 2.0)
    assert await numsub(redis_url, channel) == 1
    first.close()
    await asyncio.sleep(0.05)
    assert await numsub(redis_url, channel) == 1  # second still listens
    second.close()
    for _ in range(100):
        if await numsub(redis_url, channel) == 0:
            break
        await asyncio.sleep(0.01)
    assert await numsub(redis_url, channel) == 0
    # and a new subscriber resubscribes
    again = bus.subscribe(channel)
    await asyncio.wait_for(again.ready(), 2.0)
    assert await numsub(redis_url, channel) == 1
    await bus.publish(channel, "back")
    assert await receive(again, 1) == ["back"]


@pytest.mark.integration
async def test_redis_churn_of_subscribers_keeps_delivery(
    redis_buses: Callable[..., RedisLiveBus],
) -> None:
    bus, publisher = redis_buses(), redis_buses()
    channel = "liquid:live:t:{churn}"
    for _ in range(5):  # subscribe and leave faster than the control task runs
        bus.subscribe(channel).close()
    keeper = bus.subscribe(channel)
    await asyncio.wait_for(keeper.ready(), 2.0)
    await publisher.publish(channel, "still here")
    assert await receive(keeper, 1) == ["still here"]


@pytest.mark.integration
async def test_redis_slow_subscriber_is_bounded(
    redis_buses: Callable[..., RedisLiveBus],
) -> None:
    metrics = Metrics()
    bus, publisher = redis_buses(metrics), redis_buses()
    slow = bus.subscribe("c", maxsize=5)
    await asyncio.wait_for(slow.ready(), 2.0)
    await publisher.publish_many([("c", f"m{i}") for i in range(50)])
    for _ in range(200):
        if slow.dropped == 45:
            break
        await asyncio.sleep(0.01)
    assert len(slow) == 5
    assert await receive(slow, 5) == [f"m{i}" for i in range(45, 50)]
    assert metrics.registry.get_sample_value("liquid_live_messages_dropped_total") == 45


@pytest.mark.integration
async def test_redis_bus_close_ends_subscriptions(
    redis_buses: Callable[..., RedisLiveBus],
) -> None:
    bus = redis_buses()
    sub = bus.subscribe("c")
    await asyncio.wait_for(sub.ready(), 2.0)

    async def collect() -> list[str]:
        return [m async for m in sub]

    task = asyncio.create_task(collect())
    await asyncio.sleep(0.01)
    await bus.close()
    assert await asyncio.wait_for(task, 2.0) == []
    with pytest.raises(RuntimeError, match="closed"):
        bus.subscribe("c")


@pytest.mark.integration
async def test_redis_subscribers_receive_again_after_redis_restarts(tmp_path: Path) -> None:
    """The reader blocks on the pub/sub connection (no timeout per message): a restart of Redis
    breaks the read, and the bus reconnects and resubscribes by itself."""
    with private_redis(tmp_path / "redis") as server:
        watcher = RedisLiveBus(server.url, reconnect_delay_s=0.05)
        publisher = RedisLiveBus(server.url)
        try:
            sub = watcher.subscribe("liquid:live:t:{r}")
            await asyncio.wait_for(sub.ready(), 2.0)
            await publisher.publish("liquid:live:t:{r}", "before")
            assert await receive(sub, 1) == ["before"]
            server.kill()
            server.start()  # the same port, nothing subscribed on it
            deadline = asyncio.get_running_loop().time() + 10.0
            while await numsub(server.url, "liquid:live:t:{r}") == 0:
                assert asyncio.get_running_loop().time() < deadline, "never resubscribed"
                await asyncio.sleep(0.05)
            await publisher.publish("liquid:live:t:{r}", "after")
            assert await receive(sub, 1, timeout=5.0) == ["after"]
        finally:
            await watcher.close()
            await publisher.close()
