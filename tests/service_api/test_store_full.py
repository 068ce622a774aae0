"""A Redis out of memory (``maxmemory`` reached, ``noeviction``): writes answer 503
``store_full`` with ``Retry-After`` and change nothing, ``/readyz`` says not ready, and both
recover once memory is freed. Against a real redis-server with a small ``maxmemory``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.exceptions import OutOfMemoryError

from service.app import create_app
from tests.redis_process import RedisProcess, private_redis
from tests.service_api.conftest import make_client

pytestmark = pytest.mark.integration

T0 = 1_714_564_800.0
JUNK = "junk:"
MAXMEMORY = "8mb"


@pytest.fixture
def small_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    with private_redis(tmp_path, "--maxmemory", MAXMEMORY) as server:
        yield server


def fill_until_full(url: str) -> int:
    """Write junk keys until Redis refuses; the number written. Then lower ``maxmemory`` a
    little below what is used, so that memory freed by closing this connection (its buffers)
    does not bring Redis back under the limit."""
    client = redis.Redis.from_url(url)
    written = 0
    try:
        for _ in range(10_000):
            try:
                client.set(f"{JUNK}{written}", b"x" * 65536)
            except OutOfMemoryError:
                break
            written += 1
        else:
            raise AssertionError("Redis never ran out of memory")
        used = int(client.info("memory")["used_memory"])
        client.config_set("maxmemory", used - 256 * 1024)
        return written
    finally:
        client.close()


def free_junk(url: str) -> None:
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(f"{JUNK}*"))
        client.delete(*keys)
        client.config_set("maxmemory", MAXMEMORY)
    finally:
        client.close()


def test_writes_answer_store_full_and_readiness_follows(
    make_settings: Any, small_redis: RedisProcess
) -> None:
    settings = make_settings(redis_url=small_redis.url, retry_after_s=7)
    with make_client(create_app(settings)) as c:
        assert c.post("/v1/streams/s/events", json={"t": T0, "x": [1, 2, 3]}).status_code == 200
        before = c.get("/v1/streams/s/state").json()
        assert c.get("/readyz").status_code == 200

        assert fill_until_full(small_redis.url) > 0

        r = c.post("/v1/streams/s/events", json={"t": T0 + 1, "x": [1, 2, 3]})
        assert r.status_code == 503, r.text
        assert r.headers["retry-after"] == "7"
        assert r.json()["error"]["code"] == "store_full"
        r = c.post("/v1/events", json={"events": [{"stream_id": "s2", "t": T0, "x": [1, 2, 3]}]})
        assert r.status_code == 503
        assert r.json()["error"]["code"] == "store_full"
        r = c.put("/v1/streams/s3/state", json=before)
        assert r.status_code == 503
        assert r.json()["error"]["code"] == "store_full"
        # reads still work, and nothing changed
        assert c.get("/v1/streams/s/state").json() == before
        assert c.get("/v1/streams/s2").status_code == 404
        ready = c.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"] == {
            "store": True,
            "store_writable": False,
            "models": True,
            "engine": True,
        }

        free_junk(small_redis.url)
        assert c.get("/readyz").status_code == 200
        r = c.post("/v1/streams/s/events", json={"t": T0 + 1, "x": [1, 2, 3]})
        assert r.status_code == 200
        assert r.json()["count"] == 2


def test_a_socket_event_gets_store_full_and_the_socket_stays_open(
    make_settings: Any, small_redis: RedisProcess
) -> None:
    app = create_app(make_settings(redis_url=small_redis.url))
    with make_client(app) as c, c.websocket_connect("/v1/streams/w/live") as ws:
        assert ws.receive_json()["type"] == "subscribed"
        fill_until_full(small_redis.url)
        ws.send_json({"t": T0, "x": [1, 2, 3], "request_id": "full"})
        reply = ws.receive_json()
        assert reply["type"] == "error"
        assert reply["request_id"] == "full"
        assert reply["status"] == 503
        assert reply["error"]["code"] == "store_full"
        free_junk(small_redis.url)
        ws.send_json({"t": T0, "x": [1, 2, 3], "request_id": "ok"})
        messages = [ws.receive_json() for _ in range(2)]  # the reply and the live prediction
        result = next(m for m in messages if m["type"] == "result")
        assert result["request_id"] == "ok"
        assert result["status"] == 200
