"""The native one-call LTC inference step (liquidcore.native.ltc_step) against the PyTorch path.

The PyTorch path (``LIQUIDCORE_NATIVE=off``) is the reference. The contract: outputs and states
agree to 2e-6 absolute in float32 and 1e-13 in float64 (states stay within the reversal
potentials' hull, |v| <= 1 here), for batches served one stream at a time (B <= 4), as tiles of
16 (with a ragged tail), and both mixed; with every input/output mapping; a Δt = 0 stream keeps
its state bit for bit and outputs exactly ``output_of(h)``. Tensors the kernel cannot take
(another dtype, other shapes) go to the PyTorch path. These comparisons skip where no kernels
can be built.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

import liquidcore.cells.ltc as ltc_module
import liquidcore.native as lnative
from liquidcore import wirings
from liquidcore.cells.ltc import LTCCell
from liquidcore.native import ltc_step
from tests.native_kernels import skip_without_native_kernels

F_IN = 5


@pytest.fixture
def kernels() -> None:
    skip_without_native_kernels()


def make_cell(dtype: torch.dtype, input_mapping: str, output_mapping: str) -> LTCCell:
    torch.manual_seed(3)
    cell = LTCCell(
        wirings.AutoNCP(14, 4, seed=1),
        F_IN,
        input_mapping=input_mapping,
        output_mapping=output_mapping,
        ode_unfolds=3,
    ).to(dtype)
    with torch.no_grad():  # mappings away from identity, so that a missed one shows
        for p in (cell.input_w, cell.input_b, cell.output_w, cell.output_b):
            if p is not None:
                p.copy_(torch.randn(p.shape, dtype=dtype))
    return cell


def inputs(cell: LTCCell, B: int, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
    g = torch.Generator().manual_seed(B)
    x = torch.randn(B, F_IN, generator=g).to(dtype)
    h = (torch.rand(B, cell.units, generator=g) * 2 - 1).to(dtype)
    dt = (torch.rand(B, 1, generator=g) * 3).to(dtype)
    dt[0] = 0.0
    return x, h, dt


def step(
    cell: LTCCell, x: Tensor, h: Tensor, dt: Tensor, mode: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[Tensor, Tensor, int]:
    """One inference step with the kernels ``mode`` says; also how many native steps ran."""
    monkeypatch.setenv("LIQUIDCORE_NATIVE", mode)
    lnative.reset()
    cell.clear_cache()
    calls = []

    def counted(*args: object) -> object:
        calls.append(1)
        return ltc_step.step(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(ltc_module, "native_step", counted)
    with torch.inference_mode():
        out, h_new = cell(x, h, dt)
    return out, h_new, len(calls)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("B", [1, 3, 4, 5, 16, 20, 37])
@pytest.mark.parametrize("mappings", [("affine", "affine"), ("linear", "none"), ("none", "linear")])
def test_native_step_matches_torch_path(
    dtype: torch.dtype,
    B: int,
    mappings: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
    kernels: None,
) -> None:
    cell = make_cell(dtype, *mappings)
    x, h, dt = inputs(cell, B, dtype)
    ref_out, ref_h, ref_calls = step(cell, x, h, dt, "off", monkeypatch)
    out, h_new, calls = step(cell, x, h, dt, "require", monkeypatch)
    assert (ref_calls, calls) == (0, 1)
    tol = 2e-6 if dtype == torch.float32 else 1e-13
    torch.testing.assert_close(h_new, ref_h, rtol=0, atol=tol)
    torch.testing.assert_close(out, ref_out, rtol=0, atol=tol * (1 + float(ref_out.abs().max())))
    assert h_new.is_contiguous()
    assert out.is_contiguous()
    assert torch.equal(h_new[0], h[0])  # Δt = 0: the state stays, bit for bit
    torch.testing.assert_close(out[:1], cell.output_of(h[:1]), rtol=0, atol=0)


def test_native_step_independent_of_thread_count(
    monkeypatch: pytest.MonkeyPatch, kernels: None
) -> None:
    """Threads take whole tiles, so any thread count gives the same bits."""
    cell = make_cell(torch.float64, "affine", "affine")
    x, h, dt = inputs(cell, 70, torch.float64)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = step(cell, x, h, dt, "require", monkeypatch)
        torch.set_num_threads(2)
        two = step(cell, x, h, dt, "require", monkeypatch)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one[0], two[0])
    assert torch.equal(one[1], two[1])


def test_tensors_the_kernel_cannot_take_go_to_the_torch_path(
    monkeypatch: pytest.MonkeyPatch, kernels: None
) -> None:
    cell = make_cell(torch.float32, "affine", "affine")
    x, h, dt = inputs(cell, 3, torch.float32)
    monkeypatch.setenv("LIQUIDCORE_NATIVE", "require")
    lnative.reset()
    with torch.inference_mode():
        plan = cell._step_plan()
        assert plan is not None
        assert ltc_step.step(plan, x, h, dt) is not None
        for bad in (
            (x.double(), h, dt),  # another dtype
            (x[:, :-1], h, dt),  # too few features
            (x, h[:, :-1], dt),  # too few units
            (x, h[:2], dt),  # fewer states than streams
            (x, h, dt[:, 0]),  # Δt not [B, 1]
        ):
            assert ltc_step.step(plan, *bad) is None
    # The cell then runs the PyTorch path, which reports the mismatch as it does without kernels.
    with torch.no_grad(), pytest.raises(RuntimeError, match="same type"):
        cell(x.double(), h.double(), dt.double())


def test_no_plan_without_kernels_or_off_the_semi_implicit_sparse_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LIQUIDCORE_NATIVE", "off")
    lnative.reset()
    cell = make_cell(torch.float32, "affine", "affine")
    with torch.inference_mode():
        assert cell._step_plan() is None
    monkeypatch.setenv("LIQUIDCORE_NATIVE", "auto")
    lnative.reset()
    for other in (
        LTCCell(wirings.AutoNCP(14, 4, seed=1), F_IN, solver="rk4"),
        LTCCell(wirings.AutoNCP(14, 4, seed=1), F_IN, synapse_path="dense"),
    ):
        with torch.inference_mode():
            assert other._step_plan() is None
