"""The Kubernetes manifests under deploy/k8s: every core object validated (strict: unknown
fields are errors) against the Kubernetes JSON schemas of the kubernetes-validate package for
the oldest and newest versions we claim, the Prometheus Operator objects checked structurally
(no CRD schema ships in a package), and the cross-references between objects: selectors, ports,
probes, Secrets, the HPA's metric and the adapter rule that serves it, the Ingress backends
and hashing, the Redis chart values."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from kubernetes_validate.utils import latest_version

from tests.deploy.support import K8S_DIR, load_yaml, load_yaml_all

# Kubernetes versions the manifests must be valid for: 1.27 (autoscaling/v2, policy/v1, the
# restricted Pod Security Standard are all GA there) and the newest the package knows.
K8S_VERSIONS = ("1.27", latest_version())
HELM_VALUES = {"redis-values.yaml", "redis-cluster-values.yaml", "prometheus-adapter-values.yaml"}
CRD_GROUPS = ("monitoring.coreos.com/",)


def manifests() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in sorted(K8S_DIR.glob("*.yaml")):
        if path.name in HELM_VALUES or path.name == "kustomization.yaml":
            continue
        for doc in load_yaml_all(path):
            yield path.name, doc


def objects(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for _, d in manifests() if d["kind"] == kind}


def core_objects() -> list[tuple[str, dict[str, Any]]]:
    return [(f, d) for f, d in manifests() if not d["apiVersion"].startswith(CRD_GROUPS)]


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize(
    ("filename", "doc"),
    core_objects(),
    ids=[f"{f}:{d['kind']}/{d['metadata']['name']}" for f, d in core_objects()],
)
def test_core_objects_match_kubernetes_schema(
    filename: str, doc: dict[str, Any], version: str
) -> None:
    kubernetes_validate.validate(doc, version, strict=True)


def test_schema_validation_is_strict() -> None:
    deployment = copy.deepcopy(objects("Deployment")["liquid"])
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["paht"] = (
        "/"
    )
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[-1], strict=True)


def test_kustomization_lists_every_manifest() -> None:
    kustomization = load_yaml(K8S_DIR / "kustomization.yaml")
    listed = set(kustomization["resources"])
    on_disk = {
        p.name
        for p in K8S_DIR.glob("*.yaml")
        if p.name not in HELM_VALUES | {"kustomization.yaml", "secret.example.yaml"}
    }
    assert listed == on_disk
    # No placeholder credentials are ever applied.
    assert "secret.example.yaml" not in listed
    assert kustomization["namespace"] == "liquid"
    (image,) = kustomization["images"]
    assert (
        image["name"]
        == objects("Deployment")["liquid"]["spec"]["template"]["spec"]["containers"][0]["image"]
    )


def _container() -> dict[str, Any]:
    (container,) = objects("Deployment")["liquid"]["spec"]["template"]["spec"]["containers"]
    return container


def test_deployment_probes_resources_and_security() -> None:
    deployment = objects("Deployment")["liquid"]
    pod = deployment["spec"]["template"]
    assert (
        deployment["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    )
    c = _container()
    assert c["args"] == ["serve", "--host", "0.0.0.0", "--port", "8000"]
    assert {"name": "http", "containerPort": 8000, "protocol": "TCP"} in c["ports"]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert {"cpu", "memory"} <= c["resources"]["requests"].keys()
    assert "memory" in c["resources"]["limits"]
    # Restricted Pod Security Standard.
    psc = pod["spec"]["securityContext"]
    assert psc["runAsNonRoot"] is True
    assert psc["runAsUser"] != 0
    assert psc["seccompProfile"]["type"] == "RuntimeDefault"
    sc = c["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert any(m["mountPath"] == "/tmp" for m in c["volumeMounts"]), "writable /tmp"


def test_settings_come_from_the_configmap_and_secrets() -> None:
    c = _container()
    (config_ref,) = c["envFrom"]
    config = objects("ConfigMap")[config_ref["configMapRef"]["name"]]
    assert all(key.startswith("LIQUID_") for key in config["data"])
    from service.settings import Settings

    fields = {k.removeprefix("LIQUID_").lower(): v for k, v in config["data"].items()}
    assert set(fields) <= set(Settings.model_fields), "every key is a setting"
    Settings(**fields)  # and every value is valid
    assert config["data"]["LIQUID_ALLOW_INSECURE"] == "false"
    assert "LIQUID_API_KEYS" not in config["data"]
    assert "LIQUID_REDIS_URL" not in config["data"]
    env = {e["name"]: e for e in c["env"]}
    keys = env["LIQUID_API_KEYS"]["valueFrom"]["secretKeyRef"]
    example = load_yaml_all(K8S_DIR / "secret.example.yaml")[0]
    assert keys == {"name": example["metadata"]["name"], "key": "LIQUID_API_KEYS"}
    assert keys["key"] in example["stringData"]
    # The Redis URL takes the password from the Bitnami chart's Secret of release liquid-redis.
    assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "liquid-redis",
        "key": "redis-password",
    }
    names = list(env)
    assert names.index("REDIS_PASSWORD") < names.index("LIQUID_REDIS_URL"), "$(VAR) order"
    assert env["LIQUID_REDIS_URL"]["value"] == (
        "redis://:$(REDIS_PASSWORD)@liquid-redis-master:6379/0"
    )


def test_services_select_the_pods() -> None:
    pod_labels = objects("Deployment")["liquid"]["spec"]["template"]["metadata"]["labels"]
    services = objects("Service")
    assert set(services) == {"liquid", "liquid-sticky"}
    for service in services.values():
        assert service["spec"]["selector"].items() <= pod_labels.items()
        (port,) = service["spec"]["ports"]
        assert port["targetPort"] == "http"
        assert port["name"] == "http"


def test_servicemonitor_scrapes_each_pod_once() -> None:
    (monitor,) = objects("ServiceMonitor").values()
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    selector = monitor["spec"]["selector"]["matchLabels"]
    matched = [
        name
        for name, s in objects("Service").items()
        if selector.items() <= s["metadata"]["labels"].items()
    ]
    assert matched == ["liquid"], "one Service, so each pod is scraped once, as job=liquid"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "http"
    assert endpoint["path"] == "/metrics"
    assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout", "scheme", "relabelings"}


def test_hpa_scales_the_deployment_on_the_adapter_metric() -> None:
    hpa = objects("HorizontalPodAutoscaler")["liquid"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "liquid",
    }
    assert hpa["spec"]["minReplicas"] >= 2
    pods_metrics = [
        m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"
    ]
    assert pods_metrics
    adapter = load_yaml(K8S_DIR / "prometheus-adapter-values.yaml")
    served = {rule["name"]["as"] for rule in adapter["rules"]["custom"]}
    assert set(pods_metrics) <= served
    for rule in adapter["rules"]["custom"]:
        assert rule["resources"]["overrides"]["pod"] == {"resource": "pod"}


def test_ingress_hashes_stream_routes_by_stream_id() -> None:
    ingresses = objects("Ingress")
    sticky = ingresses["liquid-streams"]
    annotations = sticky["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/upstream-hash-by"] == "$stream_id"
    assert annotations["nginx.ingress.kubernetes.io/use-regex"] == "true"
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 3600
    (rule,) = sticky["spec"]["rules"]
    (path,) = rule["http"]["paths"]
    assert "(?<stream_id>" in path["path"]
    assert path["pathType"] == "ImplementationSpecific"
    assert path["backend"]["service"]["name"] == "liquid-sticky"
    rest = ingresses["liquid"]
    assert "nginx.ingress.kubernetes.io/upstream-hash-by" not in rest["metadata"].get(
        "annotations", {}
    )
    (rule,) = rest["spec"]["rules"]
    (path,) = rule["http"]["paths"]
    assert path["path"] == "/"
    assert path["backend"]["service"]["name"] == "liquid"
    services = objects("Service")
    for ingress in ingresses.values():
        assert ingress["spec"]["ingressClassName"] == "nginx"
        for r in ingress["spec"]["rules"]:
            for p in r["http"]["paths"]:
                backend = p["backend"]["service"]
                ports = {port["name"] for port in services[backend["name"]]["spec"]["ports"]}
                assert backend["port"]["name"] in ports


def test_pdb_covers_the_pods() -> None:
    (pdb,) = objects("PodDisruptionBudget").values()
    pod_labels = objects("Deployment")["liquid"]["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


def test_redis_chart_values_persist_and_never_evict() -> None:
    values = load_yaml(K8S_DIR / "redis-values.yaml")
    config = dict(
        line.split(None, 1)
        for line in values["commonConfiguration"].splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    )
    assert config["appendonly"] == "yes"
    assert config["appendfsync"] == "everysec"
    assert config["maxmemory-policy"] == "noeviction"
    assert values["auth"]["enabled"] is True
    assert values["master"]["persistence"]["enabled"] is True
    monitor = values["metrics"]["serviceMonitor"]
    assert values["metrics"]["enabled"]
    assert monitor["enabled"]
    assert {"targetLabel": "job", "replacement": "redis"} in monitor["relabelings"]


def test_namespace_enforces_restricted_pod_security() -> None:
    (ns,) = objects("Namespace").values()
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_every_file_is_yaml_with_a_kind() -> None:
    for path in K8S_DIR.glob("*.yaml"):
        docs = load_yaml_all(Path(path))
        assert docs, path.name
        if path.name not in HELM_VALUES:
            assert all("kind" in d and "apiVersion" in d for d in docs), path.name
