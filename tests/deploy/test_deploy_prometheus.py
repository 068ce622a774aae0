"""Prometheus configuration and alert rules, checked by promtool itself (`check config`,
`check rules`, `test rules` with deploy/prometheus/tests/), plus: every series the rules read
is one the service exports, the Kubernetes PrometheusRule carries the same rules, and the
prometheus-adapter query behind the HPA parses."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.deploy.support import (
    K8S_DIR,
    PROMETHEUS_DIR,
    RULES_FILE,
    liquid_names_in,
    load_yaml,
    load_yaml_all,
    require_binary,
    service_series_names,
)


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    exe = require_binary("promtool")
    return subprocess.run(
        [exe, *args], capture_output=True, text=True, timeout=120, check=False, cwd=cwd
    )


def test_promtool_check_config() -> None:
    proc = promtool("check", "config", str(PROMETHEUS_DIR / "prometheus.yml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # The rule files the config names were found and checked with it.
    assert "SUCCESS" in proc.stdout, proc.stdout
    assert "rules found" in proc.stdout, proc.stdout


def test_promtool_check_rules() -> None:
    proc = promtool("check", "rules", str(RULES_FILE))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_promtool_test_rules() -> None:
    tests = sorted((PROMETHEUS_DIR / "tests").glob("*.test.yml"))
    assert tests
    proc = promtool("test", "rules", *[p.name for p in tests], cwd=PROMETHEUS_DIR / "tests")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tested = {
        case["alertname"]
        for path in tests
        for group in load_yaml(path)["tests"]
        for case in group.get("alert_rule_test", [])
    }
    assert len(tested) >= 2
    assert {"LiquidHighErrorRatio", "LiquidRedisDown", "LiquidRedisMemoryNearLimit"} <= tested


def test_rules_read_only_series_the_service_exports() -> None:
    known = service_series_names()
    for group in load_yaml(RULES_FILE)["groups"]:
        for rule in group["rules"]:
            unknown = liquid_names_in(rule["expr"]) - known
            assert not unknown, f"{rule.get('alert')}: no such series {sorted(unknown)}"


def test_required_alerts_exist() -> None:
    alerts = {r["alert"] for g in load_yaml(RULES_FILE)["groups"] for r in g["rules"]}
    assert {
        "LiquidHighErrorRatio",
        "LiquidLatencyP99High",
        "LiquidRedisDown",
        "LiquidQueueWaitHigh",
        "LiquidBatchesFull",
        "LiquidRedisMemoryNearLimit",
    } <= alerts
    for group in load_yaml(RULES_FILE)["groups"]:
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in ("critical", "warning", "info")
            assert rule["annotations"]["summary"]
            assert rule["annotations"]["description"]


def test_prometheusrule_matches_the_rules_file() -> None:
    (doc,) = load_yaml_all(K8S_DIR / "prometheusrule.yaml")
    assert doc["apiVersion"] == "monitoring.coreos.com/v1"
    assert doc["kind"] == "PrometheusRule"
    assert doc["spec"]["groups"] == load_yaml(RULES_FILE)["groups"], (
        "deploy/k8s/prometheusrule.yaml is out of date: regenerate it (docs/deploy.md)"
    )


def test_adapter_query_parses(tmp_path: Path) -> None:
    """Render the adapter's Go template as it would for one pod, and let promtool parse it."""
    values = load_yaml(K8S_DIR / "prometheus-adapter-values.yaml")
    rules = values["rules"]["custom"]
    assert rules
    recorded = []
    for i, rule in enumerate(rules):
        query = (
            rule["metricsQuery"]
            .replace("<<.Series>>", rule["name"]["matches"].strip("^$"))
            .replace("<<.LabelMatchers>>", 'namespace="liquid",pod=~"liquid-.*"')
            .replace("<<.GroupBy>>", "namespace, pod")
        )
        assert "<<" not in query, query
        assert liquid_names_in(query) <= service_series_names()
        recorded.append({"record": f"adapter:rule_{i}", "expr": query})
    path = tmp_path / "adapter.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "adapter", "rules": recorded}]}))
    proc = promtool("check", "rules", str(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("job", ["liquid", "redis"])
def test_config_scrapes_the_jobs_the_rules_name(job: str) -> None:
    config = load_yaml(PROMETHEUS_DIR / "prometheus.yml")
    jobs = {c["job_name"]: c for c in config["scrape_configs"]}
    assert job in jobs
    if job == "liquid":
        # Every replica, not the load balancer: DNS service discovery on the compose service.
        (sd,) = jobs[job]["dns_sd_configs"]
        assert sd["names"] == ["liquid", "liquid-mqtt"]  # liquid-mqtt: the `mqtt` profile
        assert sd["type"] == "A"
        assert sd["port"] == 8000
