"""The exported step (torch.export, ONNX) gives the eager step's outputs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from liquidcore.export import export_step, export_step_onnx
from tests.model_factory import VARIANTS, make_model


def _inputs(n: int, model: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(n)
    x = torch.randn(n, 5, generator=g)
    dt = torch.rand(n, 1, generator=g) * 4.0
    dt[0, 0] = 0.0
    h = torch.randn(n, model.state_size, generator=g) * 0.3  # type: ignore[operator]
    return x, dt, h


@pytest.mark.parametrize("kind", VARIANTS)
def test_torch_export_matches_eager(kind: str) -> None:
    model = make_model(kind)
    program = export_step(model).module()
    for n in (1, 7):
        x, dt, h = _inputs(n, model)
        with torch.no_grad():
            y_ref, h_ref = model.step(x, dt, h)
            y, h_new = program(x, dt, h)
        torch.testing.assert_close(y, y_ref, rtol=0, atol=1e-6)
        torch.testing.assert_close(h_new, h_ref, rtol=0, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["cfc", "wired_cfc", "ltc", "mixed_cfc"])
def test_onnx_export_matches_eager(kind: str, tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    model = make_model(kind)
    path = export_step_onnx(model, tmp_path / "step.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for n in (1, 6):
        x, dt, h = _inputs(n, model)
        y, h_new = session.run(None, {"x": x.numpy(), "dt": dt.numpy(), "h": h.numpy()})
        with torch.no_grad():
            y_ref, h_ref = model.step(x, dt, h)
        torch.testing.assert_close(torch.from_numpy(y), y_ref, rtol=0, atol=1e-5)
        torch.testing.assert_close(torch.from_numpy(h_new), h_ref, rtol=0, atol=1e-5)
