"""Export a model's step as a standalone graph: ``torch.export`` and ONNX.

The exported program takes Δt already shaped ``[n, 1]`` in seconds (the boundary checks of
:mod:`liquidcore.timing` are Python and stay outside the graph) and a dynamic number of
streams ``n``. Its outputs equal the eager ``LiquidModel.step``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from liquidcore.model import LiquidModel


class StepGraph(nn.Module):
    """``(x[n,F], dt[n,1] seconds, h[n,S]) -> (y[n,O], h'[n,S])`` with no Python-side checks."""

    def __init__(self, model: LiquidModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor, dt: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        m = self.model
        out, h_new = m.cell(m.normalize(x), h, dt / m.time_unit)
        return m.head(out), h_new


def _example(model: LiquidModel, n: int) -> tuple[Tensor, Tensor, Tensor]:
    p = next(model.parameters())
    x = torch.zeros(n, model.input_size, dtype=p.dtype, device=p.device)
    dt = torch.ones(n, 1, dtype=p.dtype, device=p.device)
    return x, dt, model.init_state(n)


def export_step(model: LiquidModel) -> torch.export.ExportedProgram:
    """``torch.export`` of the step with a dynamic stream count."""
    n = torch.export.Dim("streams", min=1)
    graph = StepGraph(model).eval()
    return torch.export.export(
        graph, _example(model, 3), dynamic_shapes=({0: n}, {0: n}, {0: n}), strict=False
    )


def export_step_onnx(model: LiquidModel, path: str | Path) -> Path:
    """Write the step as an ONNX file (inputs ``x``, ``dt``, ``h``; outputs ``y``, ``h_next``)."""
    out = Path(path)
    n = torch.export.Dim("streams", min=1)
    with warnings.catch_warnings():
        # torch's exporter trips over its own deprecated pytree API and renames dynamic axes;
        # neither concerns the caller.
        warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
        warnings.filterwarnings("ignore", message=".*axis.*", category=UserWarning)
        program = torch.onnx.export(
            StepGraph(model).eval(),
            _example(model, 3),
            input_names=["x", "dt", "h"],
            output_names=["y", "h_next"],
            dynamic_shapes=({0: n}, {0: n}, {0: n}),
            dynamo=True,
            external_data=False,
            verbose=False,
        )
    if program is None:  # pragma: no cover - only the legacy exporter returns None
        raise RuntimeError("torch.onnx.export returned no program")
    program.save(str(out))
    return out
