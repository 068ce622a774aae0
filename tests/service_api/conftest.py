"""Fixtures of the API tests: small real model artifacts, settings free of the environment, an
app in this process (TestClient) and service processes (uvicorn subprocesses)."""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import torch

from liquidcore.cells.cfc import CfCCell
from liquidcore.checkpoint import load_model, save_model
from liquidcore.heads import ReadoutHead
from liquidcore.model import LiquidModel
from service.app import create_app
from service.settings import Settings
from tests.service_process import ServiceProcess, start_service

FEATURES = ("temp", "vib", "rpm")
OUTPUTS = ("risk", "load")


def build_model(name: str = "pump", seed: int = 0, *, time_unit: float = 1.0) -> LiquidModel:
    torch.manual_seed(seed)
    cell = CfCCell(len(FEATURES), 8, backbone_units=16, backbone_layers=1)
    head = ReadoutHead(cell.output_size, len(OUTPUTS))
    model = LiquidModel(
        cell,
        head,
        input_mean=[20.0, 0.0, 1000.0],
        input_std=[5.0, 1.0, 300.0],
        time_unit=time_unit,
        default_dt=0.5,
        feature_names=FEATURES,
        output_names=OUTPUTS,
        name=name,
    )
    return model.eval()


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``pump`` (default), ``pump_v2`` (same name, other weights: a model change), ``plain``
    (another model, unnamed features and outputs)."""
    root = tmp_path_factory.mktemp("models")
    out = {}
    save_model(build_model("pump", 0), root / "pump")
    out["pump"] = root / "pump"
    save_model(build_model("pump", 1), root / "pump_v2")
    out["pump_v2"] = root / "pump_v2"
    torch.manual_seed(3)
    cell = CfCCell(2, 6, backbone_units=8)
    plain = LiquidModel(cell, ReadoutHead(cell.output_size, 1), name="plain").eval()
    save_model(plain, root / "plain")
    out["plain"] = root / "plain"
    return out


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read LIQUID_* variables: tests see none but their own."""
    for key in list(os.environ):
        if key.startswith("LIQUID_") or key == "PROMETHEUS_MULTIPROC_DIR":
            monkeypatch.delenv(key)


@pytest.fixture
def make_settings(artifacts: dict[str, Path]) -> Any:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {"models": [artifacts["pump"]], "max_delay_ms": 1.0}
        values.update(overrides)
        return Settings(**values)

    return make


def make_client(app: Any) -> Any:
    """starlette's TestClient (imported quietly: starlette 1.x deprecates httpx for it in
    favour of httpx2, which is not a dependency of the project)."""
    from starlette.exceptions import StarletteDeprecationWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StarletteDeprecationWarning)
        from starlette.testclient import TestClient
    return TestClient(app)


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.integration)])
def store_settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Settings selecting the in-process store or the harness's Redis (tests run on both)."""
    if request.param == "redis":
        return {"redis_url": request.getfixturevalue("redis_url")}
    return {}


@pytest.fixture
def client(make_settings: Any) -> Iterator[Any]:
    with make_client(create_app(make_settings())) as c:
        yield c


# -- offline reference ------------------------------------------------------------------------
def offline_outputs(
    model: LiquidModel,
    events: Sequence[tuple[float, Sequence[float]]],
    *,
    first_dt: float | None = None,
    max_gap_s: float = math.inf,
) -> list[list[float]]:
    """What the service must answer: ``model.step`` one event at a time (Δt = float64 time
    difference, the model's default Δt first and after a gap, which also resets the state)."""
    first = model.default_dt if first_dt is None else first_dt
    h = model.init_state(1)
    last_t: float | None = None
    out = []
    with torch.no_grad():
        for t, x in events:
            if last_t is None or t - last_t > max_gap_s:
                h = model.init_state(1)
                dt = first
            else:
                dt = t - last_t
            y, h = model.step(
                torch.tensor([list(x)], dtype=torch.float32),
                torch.tensor([dt], dtype=torch.float64).float(),
                h,
            )
            out.append([float(v) for v in model.present(y)[0]])
            last_t = t
    return out


def outputs_list(prediction: dict[str, Any]) -> list[float]:
    outs = prediction["outputs"]
    return [float(outs[n]) for n in OUTPUTS] if isinstance(outs, dict) else [float(v) for v in outs]


def assert_close(
    got: Sequence[Sequence[float]], want: Sequence[Sequence[float]], tol: float = 1e-6
) -> None:
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        for a, b in zip(g, w, strict=True):
            assert abs(a - b) <= tol, f"event {i}: {list(g)} != {list(w)}"


def load(path: Path) -> LiquidModel:
    return load_model(path)


# -- metrics ----------------------------------------------------------------------------------
def metric_value(text: str, name: str, labels: dict[str, str] | None = None) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    found = False
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        metric, _, label_text = head.partition("{")
        if metric != name:
            continue
        have = dict(part.split("=", 1) for part in label_text.rstrip("}").split(",") if "=" in part)
        have = {k: v.strip('"') for k, v in have.items()}
        if labels and any(have.get(k) != v for k, v in labels.items()):
            continue
        total += float(value)
        found = True
    if not found:
        raise KeyError(f"no sample of {name} {labels or ''}")
    return total


# -- service processes ------------------------------------------------------------------------
@pytest.fixture
def services(tmp_path: Path) -> Iterator[Any]:
    """Starts service processes on demand; stops every one at the end."""
    started: list[ServiceProcess] = []

    def start(args: Sequence[str], **kw: Any) -> ServiceProcess:
        s = start_service(args, tmp_path, **kw)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


def post_json(client: Any, url: str, body: Any, **kw: Any) -> Any:
    return client.post(
        url, content=json.dumps(body), headers={"content-type": "application/json"}, **kw
    )
