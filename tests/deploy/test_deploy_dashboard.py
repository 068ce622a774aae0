"""The Grafana dashboard and its provisioning.

Static: the JSON is a well-formed dashboard (unique ids, a 24-column grid, every query on the
`datasource` variable), every query parses as PromQL (promtool), reads only series the service
exports, and the dashboard covers every series of service/metrics.py and the Redis health the
design asks for; the provisioning files point where docker-compose.yml mounts things.

Live (integration, slow): the real stack on this machine. A redis-server started with the
compose file's flags, the service (`python -m service serve`) on it, prometheus-redis-exporter,
and a real Prometheus scraping both every second with the rules of deploy/prometheus loaded.
After traffic with every event outcome (applied, duplicate, out of order, rejected) and a live
WebSocket, EVERY panel query, with Grafana's variables substituted, must be accepted by
Prometheus's /api/v1/query and return data, and every alert rule must evaluate without error."""

from __future__ import annotations

import json
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import free_port
from tests.deploy.support import (
    COMPOSE_FILES,
    DEPLOY,
    PROMETHEUS_DIR,
    dashboard_targets,
    interpolate,
    liquid_names_in,
    load_dashboard,
    load_yaml,
    require_binary,
    running,
    service_series_names,
    substitute_grafana,
    tail,
    wait_for_port,
)
from tests.service_process import clean_env

REDIS_SERIES = {
    "redis_up",
    "redis_memory_used_bytes",
    "redis_memory_max_bytes",
    "redis_connected_clients",
    "redis_commands_processed_total",
}


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


# -- static ------------------------------------------------------------------------------------
def test_dashboard_structure() -> None:
    dash = load_dashboard()
    assert dash["uid"]
    assert dash["title"]
    assert dash["schemaVersion"] >= 36
    ids = [p["id"] for p in panels(dash)]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("instance", "route"):
        assert variables[name]["includeAll"]
        assert variables[name]["allValue"] == ".*"
    for panel in panels(dash):
        grid = panel["gridPos"]
        assert grid["x"] >= 0, panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        refs = [t["refId"] for t in panel["targets"]]
        assert refs, panel["title"]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"]


def test_every_query_parses(tmp_path: Path) -> None:
    """promtool parses each query (as a recording rule) without a running Prometheus."""
    import subprocess

    rules = [
        {"record": f"panel:q{i}", "expr": substitute_grafana(expr)}
        for i, (_, _, expr) in enumerate(dashboard_targets(load_dashboard()))
    ]
    path = tmp_path / "panels.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
    proc = subprocess.run(
        [require_binary("promtool"), "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dashboard_covers_every_series() -> None:
    exprs = [expr for _, _, expr in dashboard_targets(load_dashboard())]
    read = set().union(*(liquid_names_in(e) for e in exprs))
    known = service_series_names()
    assert read <= known, f"no such series: {sorted(read - known)}"
    families = {n.removesuffix("_total") for n in known if not n.endswith("_created")}
    families = {
        n.removesuffix("_bucket").removesuffix("_sum").removesuffix("_count") for n in families
    }
    shown = {
        n.removesuffix("_total").removesuffix("_bucket").removesuffix("_sum").removesuffix("_count")
        for n in read
    }
    assert families <= shown, f"series without a panel: {sorted(families - shown)}"
    joined = "\n".join(exprs)
    for series in REDIS_SERIES:
        assert series in joined, f"no Redis panel reads {series}"
    titles = {p["title"] for p in panels(load_dashboard())}
    for needed in (
        "Latency p50 by route",
        "Latency p99 by route",
        "Server error ratio (5xx) by route",
        "Request rate by route",
        "Event outcomes",
        "Batch size",
        "Queue wait p50 / p99",
        "Batch compute p50 / p99",
        "State store p50 / p99 by operation",
        "Δt distribution",
        "Lag distribution",
        "Redis memory used vs max",
    ):
        assert needed in titles


def test_provisioning_matches_compose_mounts() -> None:
    grafana = DEPLOY / "grafana" / "provisioning"
    (ds,) = load_yaml(grafana / "datasources" / "prometheus.yml")["datasources"]
    assert ds["type"] == "prometheus"
    assert ds["url"] == "http://prometheus:9090"
    default = {v["name"]: v for v in load_dashboard()["templating"]["list"]}["datasource"]
    assert default["current"]["value"] == ds["uid"]
    scrape = load_yaml(PROMETHEUS_DIR / "prometheus.yml")["global"]["scrape_interval"]
    assert ds["jsonData"]["timeInterval"] == scrape
    (provider,) = load_yaml(grafana / "dashboards" / "liquid.yml")["providers"]
    compose = load_yaml(COMPOSE_FILES[0])["services"]["grafana"]
    mounts = dict(v.split(":")[:2] for v in compose["volumes"])
    assert mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"


# -- live --------------------------------------------------------------------------------------
def _wait_http(url: str, proc: Any, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{proc.args[:4]} exited ({proc.returncode}):\n{tail(log)}")
        try:
            r = httpx.get(url, timeout=1.0)
            if r.status_code == 200:
                return
            last = f"{r.status_code} {r.text[:200]}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.2)
    raise AssertionError(f"{url} not ready after {timeout} s ({last}):\n{tail(log)}")


def _query(prom: str, expr: str) -> dict[str, Any]:
    r = httpx.get(f"{prom}/api/v1/query", params={"query": expr}, timeout=10)
    body: dict[str, Any] = r.json()
    return body


def _wait_query(prom: str, expr: str, timeout: float) -> list[Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = _query(prom, expr)
        if body.get("status") == "success" and body["data"]["result"]:
            result: list[Any] = body["data"]["result"]
            return result
        time.sleep(0.25)
    raise AssertionError(f"Prometheus never returned data for {expr!r}")


def _send_traffic(api: str, ws_url: str, stack: ExitStack) -> None:
    from websockets.sync.client import connect

    with httpx.Client(base_url=api, timeout=10) as client:
        models = client.get("/v1/models")
        assert models.status_code == 200, models.text
        n = models.json()["models"][0]["input_size"]
        x = [0.5] * n
        t0 = time.time() - 30.0

        # A live subscriber stays connected while Prometheus scrapes.
        stack.enter_context(connect(f"{ws_url}/v1/streams/dash-a/live", open_timeout=10))

        r = client.post("/v1/streams/dash-a/events", json={"t": t0, "x": x, "id": "a1"})
        assert r.status_code == 200, r.text
        batch = [{"t": t0 + 0.5, "x": x, "id": "a2"}, {"t": t0 + 2.0, "x": x, "id": "a3"}]
        assert client.post("/v1/streams/dash-a/events", json={"events": batch}).status_code == 200
        dup = client.post("/v1/streams/dash-a/events", json={"t": t0 + 0.5, "x": x, "id": "a2"})
        assert dup.status_code == 200, dup.text
        assert dup.json()["duplicate"] is True, dup.text
        late = client.post("/v1/streams/dash-a/events", json={"t": t0 - 10.0, "x": x})
        assert late.status_code == 409, late.text
        bad = client.post("/v1/streams/dash-a/events", json={"t": t0 + 3, "x": [*x, 1.0]})
        assert 400 <= bad.status_code < 500, bad.text
        many = {
            "events": [
                {"stream_id": sid, "t": t0 + i, "x": x}
                for sid in ("dash-b", "dash-c")
                for i in range(3)
            ]
        }
        assert client.post("/v1/events", json=many).status_code == 200
        assert client.get("/v1/streams/dash-a").status_code == 200
        assert client.get("/v1/streams/dash-a/prediction", params={"at": t0 + 5}).status_code == 200
        assert client.get("/v1/streams/dash-a/state").status_code == 200
        assert client.delete("/v1/streams/dash-c").status_code in (200, 204)
        assert client.get("/v1/streams/no-such-stream").status_code == 404


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(120)
def test_every_panel_query_returns_data(tmp_path: Path) -> None:
    prometheus = require_binary("prometheus")
    exporter = require_binary("prometheus-redis-exporter")
    redis_server = require_binary("redis-server")

    with ExitStack() as stack:
        # Redis exactly as docker-compose.yml runs it (AOF, maxmemory, noeviction), privately.
        redis_port = free_port()
        (tmp_path / "redis").mkdir()
        command = interpolate(load_yaml(COMPOSE_FILES[0]), {})["services"]["redis"]["command"]
        assert command[0] == "redis-server"
        redis_log = tmp_path / "redis.log"
        redis_proc = stack.enter_context(
            running(
                [
                    redis_server,
                    *command[1:],
                    "--port",
                    str(redis_port),
                    "--bind",
                    "127.0.0.1",
                    "--dir",
                    str(tmp_path / "redis"),
                    "--save",
                    "",
                ],
                redis_log,
            )
        )
        wait_for_port(redis_port, redis_proc)
        redis_url = f"redis://127.0.0.1:{redis_port}/0"

        api_port = free_port()
        service_log = tmp_path / "service.log"
        service = stack.enter_context(
            running(
                [
                    sys.executable,
                    "-m",
                    "service",
                    "serve",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(api_port),
                    "--redis-url",
                    redis_url,
                    "--max-delay-ms",
                    "1",
                    "--log-level",
                    "warning",
                ],
                service_log,
                env=clean_env(),
            )
        )

        exporter_port = free_port()
        exporter_log = tmp_path / "exporter.log"
        exporter_proc = stack.enter_context(
            running(
                [
                    exporter,
                    "-redis.addr",
                    f"redis://127.0.0.1:{redis_port}",
                    "-web.listen-address",
                    f"127.0.0.1:{exporter_port}",
                ],
                exporter_log,
            )
        )

        # deploy/prometheus/prometheus.yml with local targets and 1 s intervals.
        prom_port = free_port()
        config = load_yaml(PROMETHEUS_DIR / "prometheus.yml")
        config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
        config["rule_files"] = [str(PROMETHEUS_DIR / f) for f in config["rule_files"]]
        targets = {
            "liquid": f"127.0.0.1:{api_port}",
            "redis": f"127.0.0.1:{exporter_port}",
            "prometheus": f"127.0.0.1:{prom_port}",
        }
        assert {job["job_name"] for job in config["scrape_configs"]} == set(targets)
        for job in config["scrape_configs"]:
            job.pop("dns_sd_configs", None)
            job["static_configs"] = [{"targets": [targets[job["job_name"]]]}]
        config_path = tmp_path / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(config))
        prom_log = tmp_path / "prometheus.log"
        prom_proc = stack.enter_context(
            running(
                [
                    prometheus,
                    f"--config.file={config_path}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{prom_port}",
                    "--log.level=warn",
                ],
                prom_log,
            )
        )
        prom = f"http://127.0.0.1:{prom_port}"

        _wait_http(f"http://127.0.0.1:{api_port}/readyz", service, service_log, timeout=60)
        wait_for_port(exporter_port, exporter_proc)
        _wait_http(f"{prom}/-/ready", prom_proc, prom_log, timeout=20)
        for job in targets:
            _wait_query(prom, f'up{{job="{job}"}} == 1', timeout=15)

        _send_traffic(f"http://127.0.0.1:{api_port}", f"ws://127.0.0.1:{api_port}", stack)
        # Scrapes after the traffic, so that rates over the window see it.
        _wait_query(prom, 'liquid_events_total{outcome="out_of_order"} > 0', timeout=15)
        _wait_query(prom, "liquid_websocket_connections > 0", timeout=15)
        time.sleep(2.5)

        failures = []
        for title, ref, expr in dashboard_targets(load_dashboard()):
            query = substitute_grafana(expr, rate_interval="30s")
            body = _query(prom, query)
            if body.get("status") != "success":
                failures.append(f"{title} [{ref}]: {body.get('error')} in {query}")
            elif not body["data"]["result"]:
                failures.append(f"{title} [{ref}]: no data for {query}")
        assert not failures, "\n".join(failures)

        # The panels show the traffic, not just zeros.
        outcomes = _query(
            prom,
            substitute_grafana(
                'sum by (outcome) (increase(liquid_events_total{instance=~"$instance"}[1m]))'
            ),
        )
        seen = {r["metric"]["outcome"]: float(r["value"][1]) for r in outcomes["data"]["result"]}
        for outcome in ("applied", "duplicate", "out_of_order"):
            assert seen.get(outcome, 0.0) > 0, f"no {outcome} events on the dashboard: {seen}"

        # Every alert rule evaluates cleanly against the real series.
        rules = httpx.get(f"{prom}/api/v1/rules", timeout=10).json()["data"]["groups"]
        evaluated = [r for g in rules for r in g["rules"]]
        assert len(evaluated) == sum(
            len(g["rules"])
            for g in load_yaml(PROMETHEUS_DIR / "rules" / "liquid.rules.yml")["groups"]
        )
        bad = [f"{r['name']}: {r.get('lastError')}" for r in evaluated if r["health"] != "ok"]
        assert not bad, json.dumps(bad, indent=2)
        # Nothing is firing on a healthy stack.
        firing = [r["name"] for r in evaluated if r.get("state") == "firing"]
        assert not firing, firing
