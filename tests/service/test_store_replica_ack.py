"""``min_replicas_ack`` on one Redis: a write is acknowledged only once a replica has it
(``WAIT`` on the connection that wrote), and a shortfall is a store-down error (503), never a
silent success. Real servers: a master and, for the second half, a replica of it."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import pytest
import redis
from redis.exceptions import ConnectionError as RedisConnectionError

from service.store import CasWrite, RedisStore
from tests.redis_process import private_redis

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_a_write_waits_for_a_replica(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "r").mkdir()
    with private_redis(tmp_path / "m") as master:
        lonely = RedisStore(master.url, min_replicas_ack=1, replica_ack_timeout_s=0.05)
        try:
            with pytest.raises(RedisConnectionError, match="0 of 1 replicas"):
                await lonely.cas_many([CasWrite("k", 0, b"one", 60)])
        finally:
            await lonely.close()
        replica = private_redis(tmp_path / "r", "--replicaof", "127.0.0.1", str(master.port))
        with replica as rep, redis.Redis(port=rep.port) as client:
            deadline = time.monotonic() + 10
            while client.info("replication").get("master_link_status") != "up":
                assert time.monotonic() < deadline, "the replica did not sync"
                await anyio.sleep(0.05)
            store = RedisStore(master.url, min_replicas_ack=1)
            try:
                # the write above was applied on the master (it was not acknowledged)
                assert await store.cas_many([CasWrite("k", 1, b"two", 60)]) == [True]
                assert client.hget("k", "d") == b"two"  # on the replica when answered
            finally:
                await store.close()
