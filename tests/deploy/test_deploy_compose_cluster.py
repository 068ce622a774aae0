"""The ``cluster`` profile of docker-compose.yml: six Redis Cluster nodes (durable, never
evicting, health-checked), a one-shot job that creates the cluster with one replica per master,
and the service pointed at it by the documented copy-paste (its settings valid)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.deploy.support import COMPOSE_FILES, interpolate, load_yaml

# The documented copy-paste (docs/deploy.md, the top of docker-compose.yml).
CLUSTER_URL = "redis+cluster://redis-node-1:6379,redis-node-2:6379,redis-node-3:6379"
ENV = {
    "LIQUID_ALLOW_INSECURE": "true",
    "LIQUID_REDIS_MIN_REPLICAS_ACK": "1",
    "LIQUID_REDIS_URL": CLUSTER_URL,
}
NODES = [f"redis-node-{i}" for i in range(1, 7)]


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    doc = interpolate(load_yaml(COMPOSE_FILES[0]), ENV)
    return dict(doc["services"])


def test_six_durable_cluster_nodes_in_the_profile(services: dict[str, Any]) -> None:
    for name in NODES:
        node = services[name]
        assert node["profiles"] == ["cluster"]
        assert node["hostname"] == name
        assert node["image"].startswith("redis:7.")  # sharded pub/sub needs Redis >= 7
        command = " ".join(node["command"])
        for flag in (
            "--cluster-enabled yes",
            "--cluster-config-file /data/nodes.conf",
            "--appendonly yes",
            "--maxmemory-policy noeviction",
            "--cluster-preferred-endpoint-type hostname",
        ):
            assert flag in command, f"{name}: {flag}"
        assert node["volumes"] == [f"{name}-data:/data"]
        assert "healthcheck" in node
        assert "ports" not in node, "nodes are reached on the compose network only"
    assert not [n for n in services if n.startswith("redis-node-") and n not in NODES]


def test_the_create_job_joins_every_node_with_one_replica_each(services: dict[str, Any]) -> None:
    job = services["redis-cluster-create"]
    assert job["profiles"] == ["cluster"]
    assert job["restart"] == "no"
    assert {n: c["condition"] for n, c in job["depends_on"].items()} == dict.fromkeys(
        NODES, "service_healthy"
    )
    script = " ".join(job["command"])
    assert "cluster_state:ok" in script, "a restart must not try to create it again"
    create = script.split("--cluster create", 1)[1].split()
    assert create[: len(NODES)] == [f"{n}:6379" for n in NODES]
    assert create[len(NODES) :] == ["--cluster-replicas", "1", "--cluster-yes"]


def test_the_service_takes_the_cluster_url(services: dict[str, Any]) -> None:
    from service.settings import Settings

    env = services["liquid"]["environment"]
    assert env["LIQUID_REDIS_URL"] == CLUSTER_URL
    fields = {k.removeprefix("LIQUID_").lower(): v for k, v in env.items()}
    settings = Settings(**fields)
    assert settings.redis_url == CLUSTER_URL
    assert settings.redis_min_replicas_ack == 1
    seeds = CLUSTER_URL.removeprefix("redis+cluster://").split(",")
    assert {s.split(":")[0] for s in seeds} <= set(NODES)


def test_k8s_cluster_chart_values_are_durable_with_one_replica_per_master() -> None:
    from tests.deploy.support import K8S_DIR

    values = load_yaml(K8S_DIR / "redis-cluster-values.yaml")
    assert values["cluster"] == {"nodes": 6, "replicas": 1}
    assert values["usePassword"] is True
    config = dict(line.split(None, 1) for line in values["redis"]["configmap"].splitlines())
    assert config["appendonly"] == "yes"
    assert config["appendfsync"] == "everysec"
    assert config["maxmemory-policy"] == "noeviction"
    assert values["persistence"]["enabled"] is True
    # the documented URL parses and names the chart's Service as the seed
    from service.store.redis_cluster import ClusterSeeds

    text = (K8S_DIR / "redis-cluster-values.yaml").read_text(encoding="utf-8")
    url = next(w for w in text.split() if w.startswith("LIQUID_REDIS_URL="))
    seeds = ClusterSeeds.parse(url.split("=", 1)[1].replace("$(REDIS_PASSWORD)", "secret"))
    assert seeds.nodes == (("liquid-redis-cluster", 6379),)
    assert seeds.password == "secret"
