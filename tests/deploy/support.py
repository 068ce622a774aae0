"""Helpers of the deployment tests: repository paths, YAML loading, Compose-style variable
interpolation, Grafana template substitution, and starting/stopping local processes."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
COMPOSE_FILES = (REPO / "docker-compose.yml", REPO / "docker-compose.gpu.yml")
PROMETHEUS_DIR = DEPLOY / "prometheus"
RULES_FILE = PROMETHEUS_DIR / "rules" / "liquid.rules.yml"
DASHBOARD_FILE = DEPLOY / "grafana" / "dashboards" / "liquid.json"
K8S_DIR = DEPLOY / "k8s"
NGINX_CONF = DEPLOY / "nginx" / "nginx.conf"


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def load_yaml_all(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def load_dashboard() -> dict[str, Any]:
    data = json.loads(DASHBOARD_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def require_binary(name: str) -> str:
    """The path of an executable, or skip: `make test` installs these (see docs/deploy.md)."""
    exe = shutil.which(name)
    if exe is None:
        venv_bin = Path(sys.executable).parent / name
        if venv_bin.exists():
            return str(venv_bin)
        pytest.skip(f"{name} is not installed (make install-system installs it)")
    return exe


# -- Compose interpolation ---------------------------------------------------------------------
_VAR = re.compile(
    r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<plain>[A-Za-z_][A-Za-z0-9_]*)|(?P<escaped>\$))"
)


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """Resolve ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``, ``${VAR:?err}``,
    ``${VAR?err}``, ``${VAR:+alt}`` and ``$$`` as Docker Compose does, in every string of a
    loaded document. An unset required variable raises ``KeyError``."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(m: re.Match[str]) -> str:
        if m.group("escaped"):
            return "$"
        name = m.group("braced") or m.group("plain")
        op, arg = m.group("op"), m.group("arg") or ""
        current = env.get(name)
        if op in (":-", "-"):
            unset = current is None or (op == ":-" and current == "")
            return arg if unset else str(current)
        if op in (":?", "?"):
            if current is None or (op == ":?" and current == ""):
                raise KeyError(f"{name} is required: {arg}")
            return current
        if op in (":+", "+"):
            isset = current is not None and (op == "+" or current != "")
            return arg if isset else ""
        return current or ""

    return _VAR.sub(one, value)


def merge_compose(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Merge an override file into a base file the way Compose does for the keys these files
    use: mappings merge recursively, scalars and sequences of the override replace."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_compose(out[key], value)
        else:
            out[key] = value
    return out


# -- Grafana -----------------------------------------------------------------------------------
def dashboard_targets(dashboard: Mapping[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(panel title, refId, PromQL) of every query of every panel, rows' panels included."""

    def walk(panels: Sequence[Mapping[str, Any]]) -> Iterator[tuple[str, str, str]]:
        for panel in panels:
            for target in panel.get("targets", []):
                yield str(panel.get("title")), str(target.get("refId")), str(target["expr"])
            yield from walk(panel.get("panels", []))

    yield from walk(dashboard.get("panels", []))


# What Grafana puts in place of its variables when the dashboard shows every replica and route
# over the last hour. $__rate_interval is max(4 x scrape interval, step + scrape interval).
GRAFANA_SUBSTITUTIONS = {
    "$__rate_interval": "20s",
    "$__interval": "5s",
    "$__range": "1h",
    "${datasource}": "",
    "$instance": ".*",
    "$route": ".*",
}


def substitute_grafana(expr: str, rate_interval: str = "20s") -> str:
    subs = dict(GRAFANA_SUBSTITUTIONS, **{"$__rate_interval": rate_interval})
    for name in sorted(subs, key=len, reverse=True):
        expr = expr.replace(name, subs[name])
    leftover = re.findall(r"\$\{?\w+", expr)
    if leftover:
        raise AssertionError(f"unknown Grafana variable(s) {leftover} in {expr!r}")
    return expr


# -- metric names ------------------------------------------------------------------------------
def service_series_names() -> set[str]:
    """Every series name the service can export (``service/metrics.py``), with the suffixes
    Prometheus sees: ``_total`` for counters, ``_bucket/_sum/_count`` for histograms."""
    from service.metrics import Metrics

    names: set[str] = set()
    for family in Metrics().registry.collect():
        if family.type == "counter":
            names |= {family.name + "_total", family.name + "_created"}
        elif family.type == "histogram":
            names |= {family.name + s for s in ("_bucket", "_sum", "_count", "_created")}
        else:
            names.add(family.name)
    return names


def liquid_names_in(expr: str) -> set[str]:
    """The ``liquid_*`` series names an expression reads."""
    return set(re.findall(r"\b(liquid_[a-z0-9_]+)\b", expr))


# -- processes ---------------------------------------------------------------------------------
def wait_for_port(
    port: int, proc: subprocess.Popen[bytes] | None = None, timeout: float = 20.0
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


@contextmanager
def running(args: Sequence[str], log: Path, **kwargs: Any) -> Iterator[subprocess.Popen[bytes]]:
    """Run a process for the duration of the block, its output in ``log``; stop it after."""
    with log.open("wb") as out:
        proc = subprocess.Popen(list(args), stdout=out, stderr=subprocess.STDOUT, **kwargs)
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)


def tail(log: Path, n: int = 40) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""
