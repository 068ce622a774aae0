"""docker-compose.yml and docker-compose.gpu.yml against the Compose Specification schema (the
copy vendored in the check-jsonschema package), and what the files must say: Redis persistence
and no eviction, replicas behind the load balancer, Prometheus and Grafana wired to the files
under deploy/, the GPU override."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.deploy.support import COMPOSE_FILES, REPO, interpolate, load_yaml, merge_compose

# What a user sets before `docker compose up`; everything else keeps its default.
ENV = {"LIQUID_API_KEYS": "0123456789abcdef:demo"}


def compose_schema() -> dict[str, Any]:
    ref = resources.files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json")
    schema = json.loads(ref.read_text(encoding="utf-8"))
    assert schema.get("title") == "Compose Specification"
    return schema


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return compose_schema()


@pytest.fixture(scope="module")
def merged() -> dict[str, Any]:
    base, gpu = (interpolate(load_yaml(p), ENV) for p in COMPOSE_FILES)
    return {"base": base, "gpu": merge_compose(base, gpu)}


def _errors(schema: dict[str, Any], doc: Any) -> list[str]:
    validator_cls = jsonschema.validators.validator_for(schema)
    validator = validator_cls(schema, format_checker=validator_cls.FORMAT_CHECKER)
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)
    ]


def test_schema_is_usable(schema: dict[str, Any]) -> None:
    validator_cls = jsonschema.validators.validator_for(schema)
    validator_cls.check_schema(schema)
    # The validator does reject what Compose rejects (so a pass below means something).
    assert _errors(schema, {"services": {"x": {"imagee": "redis"}}})
    assert _errors(schema, {"services": {"x": {"ports": "8080:80"}}})


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_file_matches_schema(schema: dict[str, Any], path: Path) -> None:
    raw = load_yaml(path)
    assert _errors(schema, raw) == []
    # ... and once variables are resolved as `docker compose config` would.
    assert _errors(schema, interpolate(raw, ENV)) == []


def test_gpu_override_merged_matches_schema(schema: dict[str, Any], merged: dict[str, Any]) -> None:
    assert _errors(schema, merged["gpu"]) == []


def test_redis_persists_and_never_evicts(merged: dict[str, Any]) -> None:
    redis = merged["base"]["services"]["redis"]
    assert redis["image"].startswith("redis:7.")
    args = redis["command"]
    flags = dict(zip(args[1::2], args[2::2], strict=True))
    assert flags["--appendonly"] == "yes"
    assert flags["--appendfsync"] == "everysec"
    assert flags["--maxmemory-policy"] == "noeviction"
    assert flags["--maxmemory"]
    assert any(v.endswith(":/data") for v in redis["volumes"]), "AOF must land on a volume"
    assert "healthcheck" in redis


def test_replicas_share_redis_and_sit_behind_the_balancer(merged: dict[str, Any]) -> None:
    services = merged["base"]["services"]
    liquid = services["liquid"]
    assert int(liquid["deploy"]["replicas"]) >= 2
    env = liquid["environment"]
    assert env["LIQUID_REDIS_URL"] == "redis://redis:6379/0"
    assert env["LIQUID_API_KEYS"] == ENV["LIQUID_API_KEYS"]
    assert env["LIQUID_ALLOW_INSECURE"] == "false"
    assert liquid["depends_on"]["redis"]["condition"] == "service_healthy"
    assert "ports" not in liquid, "replicas are reached through the load balancer only"
    assert liquid["build"]["dockerfile"] == "deploy/Dockerfile"
    assert "/readyz" in " ".join(liquid["healthcheck"]["test"])
    lb = services["lb"]
    assert any(v.startswith("./deploy/nginx/nginx.conf:") for v in lb["volumes"])
    assert lb["ports"] == ["127.0.0.1:8080:8080"], "published on loopback by default"


def test_monitoring_uses_the_files_under_deploy(merged: dict[str, Any]) -> None:
    services = merged["base"]["services"]
    prom = services["prometheus"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in prom["volumes"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prom["command"]
    graf = services["grafana"]
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in graf["volumes"]
    assert "./deploy/grafana/dashboards:/var/lib/grafana/dashboards:ro" in graf["volumes"]
    exporter = services["redis-exporter"]
    assert exporter["environment"]["REDIS_ADDR"] == "redis://redis:6379"


def test_bind_mounts_exist(merged: dict[str, Any]) -> None:
    for name, service in merged["gpu"]["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (REPO / source).exists(), f"{name}: {source} does not exist"
        build = service.get("build")
        if build:
            assert (REPO / build["context"] / build["dockerfile"]).is_file()


def test_images_are_pinned(merged: dict[str, Any]) -> None:
    for name, service in merged["gpu"]["services"].items():
        image = service["image"]
        if "build" in service:
            continue  # built here
        tag = image.rsplit(":", 1)[-1] if ":" in image else ""
        pinned = bool(tag) and tag != "latest" and any(c.isdigit() for c in tag)
        assert pinned, f"{name}: {image} is not pinned to a version"


def test_gpu_override_gives_the_service_the_gpu(merged: dict[str, Any]) -> None:
    liquid = merged["gpu"]["services"]["liquid"]
    assert liquid["build"]["dockerfile"] == "deploy/Dockerfile.cuda"
    assert liquid["environment"]["LIQUID_DEVICE"] == "cuda"
    # The rest of the environment is kept (mappings merge).
    assert liquid["environment"]["LIQUID_REDIS_URL"] == "redis://redis:6379/0"
    devices = liquid["deploy"]["resources"]["reservations"]["devices"]
    assert devices
    assert devices[0]["driver"] == "nvidia"
    assert devices[0]["capabilities"] == ["gpu"]


def test_service_environment_is_valid_settings(merged: dict[str, Any]) -> None:
    """Every LIQUID_* variable the compose files set is a real setting with a valid value."""
    from service.settings import Settings

    for variant in ("base", "gpu"):
        env = merged[variant]["services"]["liquid"]["environment"]
        fields = {k.removeprefix("LIQUID_").lower(): v for k, v in env.items()}
        unknown = set(fields) - set(Settings.model_fields)
        assert not unknown, f"not settings: {sorted(unknown)}"
        settings = Settings(**fields, host="0.0.0.0")
        settings.check_bind_is_safe()  # keys are set, so a public bind is allowed
