"""The service on a real Redis Cluster (3 masters + 3 replicas started by the harness): the
store contract across nodes, every route 2xx, live feeds across two service processes, a
reshard while events flow, and a master SIGKILLed under load with ``min_replicas_ack=1``.
The longer campaign (with and without WAIT) is ``make chaos-cluster``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from liquidcore.checkpoint import load_model
from service.app import create_app
from service.metrics import Metrics
from service.store import CasWrite, PartialStoreError, RedisClusterStore
from service.store.keys import hash_slot
from service.store.redis_cluster import ClusterSeeds
from tests.cluster_load import EventLoad
from tests.redis_process import RedisClusterProcesses, private_redis_cluster
from tests.service_api.conftest import make_client, metric_value
from tests.service_process import ServiceProcess, start_service

pytestmark = pytest.mark.integration

T0 = 1_714_564_800.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterProcesses]:
    with private_redis_cluster(tmp_path_factory.mktemp("cluster")) as c:
        yield c


@pytest.fixture(scope="module")
def two_services(
    cluster: RedisClusterProcesses,
    artifacts: dict[str, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ServiceProcess, ServiceProcess]]:
    """Two service processes on the cluster, writes acknowledged by one replica (WAIT 1)."""
    tmp = tmp_path_factory.mktemp("services")
    args = ["--model", str(artifacts["pump"]), "--redis-url", cluster.url]
    env = {"LIQUID_REDIS_MIN_REPLICAS_ACK": "1"}
    with ThreadPoolExecutor(2) as pool:
        a, b = pool.map(lambda _: start_service(args, tmp, env=env), range(2))
    try:
        yield a, b
    finally:
        a.stop()
        b.stop()


def test_cluster_url_names_the_seed_nodes() -> None:
    seeds = ClusterSeeds.parse("redis+cluster://u:p%40ss@10.0.0.1:7000,redis-2:7001/0")
    assert seeds.nodes == (("10.0.0.1", 7000), ("redis-2", 7001))
    assert (seeds.username, seeds.password) == ("u", "p@ss")
    with pytest.raises(ValueError, match="not host:port"):
        ClusterSeeds.parse("redis+cluster://:7000")


def test_store_contract_across_nodes(cluster: RedisClusterProcesses) -> None:
    metrics = Metrics()

    async def run() -> None:
        store = RedisClusterStore(cluster.url, metrics=metrics)
        try:
            keys = [f"liquid:s:t:m:{{contract-{i}}}" for i in range(200)]
            await store.client.initialize()
            # the keys span every master
            nodes = {store.client.get_node_from_key(k).name for k in keys}
            assert len(nodes) == 3
            first = [CasWrite(k, 0, f"v1 {k}".encode(), 60.0) for k in keys]
            assert await store.cas_many(first) == [True] * 200
            assert await store.cas_many(first) == [False] * 200  # version 1 exists now
            loaded = await store.load_many([*reversed(keys), "liquid:s:t:m:{absent}"])
            assert loaded[-1] is None
            assert [(r.version, r.payload) for r in loaded[:-1] if r] == [
                (1, f"v1 {k}".encode()) for k in reversed(keys)
            ]
            # one key twice in a call: the second write sees the first's outcome (as on one
            # Redis: the same script), and only the first is applied
            twice = [CasWrite(keys[0], 1, b"a", None), CasWrite(keys[0], 1, b"b", None)]
            assert await store.cas_many(twice) == [True, True]
            assert (await store.load_many([keys[0]]))[0] == (2, b"a")
            assert await store.delete(keys[0])
            assert (await store.load_many([keys[0]])) == [None]
            assert await store.ping()
        finally:
            await store.close()

    asyncio.run(run())
    text = metrics.render_latest()[0].decode()
    # a steady cluster: one call per master each way (4 loads, 4 writes), nothing sent again
    # but each script's text once per master (NOSCRIPT on first use)
    calls = "liquid_state_store_node_seconds_count"
    assert metric_value(text, calls, {"op": "load", "role": "primary"}) <= 4 * 3
    assert metric_value(text, calls, {"op": "save", "role": "primary"}) <= 4 * 3
    retries = [ln for ln in text.splitlines() if ln.startswith("liquid_state_store_retries_total")]
    assert retries == ['liquid_state_store_retries_total{reason="noscript"} 6.0']


def test_replica_acknowledgement_shortfall_fails_the_writes(cluster: RedisClusterProcesses) -> None:
    async def run() -> None:
        # one replica per master: asking for two can never be met
        store = RedisClusterStore(cluster.url, min_replicas_ack=2, replica_ack_timeout_s=0.05)
        try:
            keys = [f"liquid:s:t:m:{{ack-{i}}}" for i in range(12)]
            with pytest.raises(PartialStoreError) as info:
                await store.cas_many([CasWrite(k, 0, b"x", 60.0) for k in keys])
            assert info.value.failed == frozenset(range(12))
        finally:
            await store.close()
        ok = RedisClusterStore(cluster.url, min_replicas_ack=1)
        try:
            assert await ok.cas_many([CasWrite(k, 1, b"y", 60.0) for k in keys]) == [True] * 12
        finally:
            await ok.close()

    asyncio.run(run())


def test_events_without_their_replica_acknowledgements_answer_503(
    cluster: RedisClusterProcesses, make_settings: Any
) -> None:
    settings = make_settings(
        redis_url=cluster.url,
        redis_min_replicas_ack=2,  # one replica per master: never met
        redis_replica_ack_timeout_ms=50,
        retry_after_s=3,
    )
    with make_client(create_app(settings)) as c:
        body = {"t": T0, "x": [1.0, 2.0, 3.0], "id": "unacked"}
        r = c.post("/v1/streams/unacked/events", json=body)
        assert r.status_code == 503, r.text
        assert r.json()["error"]["code"] == "unavailable"
        assert r.headers["Retry-After"] == "3"
        batch = [{"stream_id": f"u{i}", "t": T0, "x": [1.0, 2.0, 3.0]} for i in range(6)]
        r = c.post("/v1/events", json={"events": batch})
        assert r.status_code == 503, r.text  # every event failed: the request did
    # applied on the masters but never acknowledged: a retry is answered as a duplicate
    with make_client(create_app(make_settings(redis_url=cluster.url))) as c:
        again = c.post("/v1/streams/unacked/events", json=body)
        assert again.status_code == 200, again.text
        assert again.json()["duplicate"] is True


def test_every_route_answers_2xx_over_a_cluster(
    cluster: RedisClusterProcesses, make_settings: Any
) -> None:
    app = create_app(make_settings(redis_url=cluster.url, redis_min_replicas_ack=1))
    with make_client(app) as c:
        streams = [f"r{i}" for i in range(24)]  # spread over the three masters
        for i, s in enumerate(streams):
            r = c.post(f"/v1/streams/{s}/events", json={"t": T0 + i, "x": [1.0, 2.0, 3.0]})
            assert r.status_code == 200, r.text
        batch = [{"stream_id": s, "t": T0 + 100, "x": [2.0, 1.0, 0.0]} for s in streams]
        r = c.post("/v1/events", json={"events": batch})
        assert r.status_code == 200, r.text
        assert [res["prediction"]["count"] for res in r.json()["results"]] == [2] * len(streams)
        assert c.get("/v1/streams/r0").status_code == 200
        assert c.get("/v1/streams/r0/prediction", params={"t": T0 + 200}).status_code == 200
        snap = c.get("/v1/streams/r0/state")
        assert snap.status_code == 200
        assert c.put("/v1/streams/copy/state", json=snap.json()).status_code == 200
        assert c.get("/v1/streams/copy/state").json()["h"] == snap.json()["h"]
        assert c.delete("/v1/streams/r1").status_code == 204
        assert c.get("/v1/models").status_code == 200
        assert c.get("/healthz").status_code == 200
        ready = c.get("/readyz")
        assert ready.status_code == 200, ready.text
        with c.websocket_connect("/v1/streams/r2/live") as ws:
            assert ws.receive_json()["type"] == "subscribed"
            c.post("/v1/streams/r2/events", json={"t": T0 + 300, "x": [0.0, 0.0, 1.0]})
            assert ws.receive_json()["prediction"]["count"] == 3
        text = c.get("/metrics").text
        assert (
            metric_value(
                text, "liquid_state_store_node_seconds_count", {"op": "save", "role": "replica"}
            )
            > 0
        )
        answers = [ln for ln in text.splitlines() if ln.startswith("liquid_http_requests_total")]
        assert answers
        assert not [ln for ln in answers if 'status="5' in ln]


def test_readyz_is_503_while_a_slot_is_uncovered(
    cluster: RedisClusterProcesses, make_settings: Any
) -> None:
    master = cluster.masters()[0]
    slot = cluster.slots_of(master)[0]
    with master.client() as client:
        app = create_app(make_settings(redis_url=cluster.url))
        with make_client(app) as c:
            assert c.get("/readyz").status_code == 200
            client.execute_command("CLUSTER", "DELSLOTS", slot)
            try:
                deadline = time.monotonic() + 10
                while c.get("/readyz").status_code != 503:
                    assert time.monotonic() < deadline, "readyz stayed 200 with a slot uncovered"
                    time.sleep(0.1)
            finally:
                client.execute_command("CLUSTER", "ADDSLOTS", slot)
            cluster.wait_ok()


def test_live_feed_across_two_service_processes(
    two_services: tuple[ServiceProcess, ServiceProcess],
) -> None:
    a, b = two_services
    with connect(f"ws://127.0.0.1:{b.port}/v1/streams/w0/live", open_timeout=10) as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "subscribed"
        with httpx.Client(timeout=30) as c:
            for i in range(12):
                base = (a, b)[i % 2].url
                body = {"t": T0 + i, "x": [1.0, 0.0, float(i)], "id": f"w0-{i}"}
                assert c.post(f"{base}/v1/streams/w0/events", json=body).status_code == 200
        live = [json.loads(ws.recv(timeout=10))["prediction"] for _ in range(12)]
    assert sorted(p["id"] for p in live) == sorted(f"w0-{i}" for i in range(12))


MOVED_SLOTS = 600


def redirects(*services: ServiceProcess) -> float:
    """MOVED / ASK replies the services followed so far."""
    total = 0.0
    for service in services:
        text = httpx.get(f"{service.url}/metrics", timeout=10).text
        for kind in ("moved", "ask"):
            with contextlib.suppress(KeyError):
                total += metric_value(text, "liquid_state_store_redirects_total", {"kind": kind})
    return total


def split_by_slot(prefix: str, slots: set[int], *, inside: int, outside: int) -> list[str]:
    """Stream ids ``<prefix><k>``: ``outside`` whose slot is not in ``slots``, then ``inside``
    whose slot is (a stream's slot is its id's: every key of it has the id as hash tag)."""
    names = [f"{prefix}{k}" for k in range(20000)]
    out = [n for n in names if hash_slot(n) not in slots][:outside]
    return out + [n for n in names if hash_slot(n) in slots][:inside]


def test_reshard_while_events_flow_loses_nothing(
    cluster: RedisClusterProcesses,
    two_services: tuple[ServiceProcess, ServiceProcess],
    artifacts: dict[str, Path],
) -> None:
    a, b = two_services
    source, target = cluster.masters()[:2]
    moved = set(cluster.slots_of(source)[:MOVED_SLOTS])  # redis-cli moves the first ones
    streams = split_by_slot("reshard", moved, inside=8, outside=4)
    load = EventLoad([a.url, b.url], streams)
    time.sleep(1.0)
    redirects_before = redirects(a, b)
    cluster.reshard(source, target, slots=MOVED_SLOTS)
    time.sleep(1.0)
    load.stop(load_model(artifacts["pump"])).check()
    assert redirects(a, b) > redirects_before, "the reshard moved no slot the load was using"


def test_master_killed_under_load_loses_nothing_acknowledged_with_wait(
    cluster: RedisClusterProcesses,
    two_services: tuple[ServiceProcess, ServiceProcess],
    artifacts: dict[str, Path],
) -> None:
    a, b = two_services
    victim = cluster.masters()[0]
    slots = set(cluster.slots_of(victim))
    # 6 streams on the master that dies, 6 elsewhere; one more on it is watched live
    *streams, watched = split_by_slot("failover", slots, inside=7, outside=6)
    with connect(f"ws://127.0.0.1:{b.port}/v1/streams/{watched}/live", open_timeout=10) as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "subscribed"
        load = EventLoad([a.url, b.url], streams)
        time.sleep(1.0)
        victim.kill()
        cluster.wait_ok()  # its replica is promoted (cluster-node-timeout 1 s)
        time.sleep(1.0)
        load.stop(load_model(artifacts["pump"])).check()
        # The promoted shard has no replica, so WAIT 1 refuses its writes (503) until the
        # killed node is back, as a replica of the new master.
        victim.start()
        cluster.wait_ok()
        body = {"t": T0, "x": [1.0, 2.0, 3.0], "id": "after-failover"}
        with httpx.Client(timeout=30) as c:
            r = c.post(f"{a.url}/v1/streams/{watched}/events", json=body)
            deadline = time.monotonic() + 20
            while r.status_code == 503 and time.monotonic() < deadline:
                time.sleep(0.2)
                r = c.post(f"{a.url}/v1/streams/{watched}/events", json=body)
            assert r.status_code == 200, r.text
        # the live subscription followed the slot to the promoted master
        assert json.loads(ws.recv(timeout=20))["prediction"]["id"] == "after-failover"
