"""The faults, registered by name. Each injects its fault into a running :class:`Cluster` and
heals it again (restarts, resumes, lifts the limit) while the load goes on; blocking steps run
in threads so the clients keep sending. ``fsync`` is the ``appendfsync`` the scenario runs with.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from tests.chaos.cluster import Cluster

REDIS_DOWN_S = 2.0
PAUSE_S = 8.0
FULL_S = 5.0


@dataclass(frozen=True)
class Fault:
    name: str
    description: str
    inject: Callable[[Cluster], Awaitable[None]]
    fsync: str = "everysec"
    # appendfsync everysec promises durability of all but the last ~1 s: a loss there is the
    # setting's documented cost, reported but not a failure of the campaign.
    may_lose_last_second: bool = False


async def _none(cluster: Cluster) -> None:
    return None


async def _replica_sigkill(cluster: Cluster) -> None:
    await asyncio.to_thread(cluster.replicas[0].kill, signal.SIGKILL)
    await asyncio.to_thread(cluster.restart_replica, 0)


async def _redis_sigkill(cluster: Cluster) -> None:
    await asyncio.to_thread(cluster.redis.kill)
    await asyncio.sleep(REDIS_DOWN_S)
    await asyncio.to_thread(cluster.redis.start)


async def _redis_shutdown_nosave(cluster: Cluster) -> None:
    await asyncio.to_thread(cluster.redis.shutdown_nosave)
    await asyncio.sleep(REDIS_DOWN_S)
    await asyncio.to_thread(cluster.redis.start)


async def _redis_sigstop(cluster: Cluster) -> None:
    cluster.redis.send_signal(signal.SIGSTOP)
    try:
        await asyncio.sleep(PAUSE_S)
    finally:
        cluster.redis.send_signal(signal.SIGCONT)


async def _redis_full(cluster: Cluster) -> None:
    """maxmemory below what is used (noeviction): every write is refused until it is lifted."""

    def set_limit(full: bool) -> None:
        with cluster.redis.client() as client:
            used = int(client.info("memory")["used_memory"])
            client.config_set("maxmemory", max(1, used // 2) if full else 0)

    await asyncio.to_thread(set_limit, True)
    try:
        await asyncio.sleep(FULL_S)
    finally:
        await asyncio.to_thread(set_limit, False)


FAULTS: dict[str, Fault] = {
    f.name: f
    for f in (
        Fault("none", "no fault (the baseline)", _none),
        Fault(
            "replica_sigkill",
            "SIGKILL one of the two replicas, then start it again",
            _replica_sigkill,
        ),
        Fault(
            "redis_shutdown_nosave",
            f"Redis SHUTDOWN NOSAVE, restarted after {REDIS_DOWN_S:g} s (AOF everysec)",
            _redis_shutdown_nosave,
        ),
        Fault(
            "redis_sigkill_everysec",
            f"Redis SIGKILL with appendfsync everysec, restarted after {REDIS_DOWN_S:g} s",
            _redis_sigkill,
            may_lose_last_second=True,
        ),
        Fault(
            "redis_sigkill_always",
            f"Redis SIGKILL with appendfsync always, restarted after {REDIS_DOWN_S:g} s",
            _redis_sigkill,
            fsync="always",
        ),
        Fault("redis_sigstop", f"Redis SIGSTOP for {PAUSE_S:g} s, then SIGCONT", _redis_sigstop),
        Fault(
            "redis_maxmemory",
            f"Redis maxmemory set below its used memory (noeviction) for {FULL_S:g} s",
            _redis_full,
        ),
    )
}


def fault_named(name: str) -> Fault:
    try:
        return FAULTS[name]
    except KeyError:
        raise ValueError(f"unknown fault {name!r}; choose from {', '.join(FAULTS)}") from None
