"""The one folding cache every cell uses (``liquidcore.cells.fold_cache``): cached without
autograd, rebuilt with it, invalidated by parameter updates and by dtype/device moves."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor

from liquidcore import wirings
from liquidcore.cells.base import LiquidCell
from liquidcore.cells.cfc import CfCCell, WiredCfCCell
from liquidcore.cells.fold_cache import FoldCache
from liquidcore.cells.ltc import LTCCell

F_IN = 4


def cfc() -> LiquidCell:
    return CfCCell(F_IN, 6, backbone_units=8, backbone_layers=2)


def wired_cfc() -> LiquidCell:
    return WiredCfCCell(F_IN, wirings.AutoNCP(10, 3, seed=1))


def ltc() -> LiquidCell:
    return LTCCell(wirings.AutoNCP(10, 3, seed=1), F_IN)


CELLS: dict[str, Callable[[], LiquidCell]] = {"cfc": cfc, "wired_cfc": wired_cfc, "ltc": ltc}


def make(kind: str) -> tuple[LiquidCell, Tensor, Tensor, Tensor]:
    torch.manual_seed(0)
    cell = CELLS[kind]()
    x, h, dt = torch.randn(3, F_IN), torch.randn(3, cell.state_size), torch.rand(3, 1) + 0.1
    return cell, x, h, dt


def first_weight(cell: LiquidCell) -> Tensor:
    """A parameter every fold depends on."""
    return next(p for n, p in cell.named_parameters() if n.endswith("weight") or n == "sigma")


def step(cell: LiquidCell, x: Tensor, h: Tensor, dt: Tensor, grad: bool) -> Tensor:
    with torch.enable_grad() if grad else torch.inference_mode():
        return cell(x.to(h.dtype), h, dt.to(h.dtype))[1].detach()


@pytest.mark.parametrize("kind", CELLS)
def test_every_folding_cell_keeps_its_folds_in_a_fold_cache(kind: str) -> None:
    cell, x, h, dt = make(kind)
    caches = [m._folds for m in cell.modules() if isinstance(m, LiquidCell) and m._folds]
    assert caches
    assert all(isinstance(c, FoldCache) for c in caches)
    assert all(c._entry is None for c in caches)
    step(cell, x, h, dt, grad=True)
    assert all(c._entry is None for c in caches)  # autograd: built in the graph, never stored
    step(cell, x, h, dt, grad=False)
    assert all(c._entry is not None for c in caches)


@pytest.mark.parametrize("kind", CELLS)
def test_autograd_path_is_uncached(kind: str) -> None:
    cell, x, h, dt = make(kind)
    before = step(cell, x, h, dt, grad=False)  # fills the cache
    first_weight(cell).data.mul_(-1.5)  # through .data: no version bump, the cache cannot see it
    assert torch.equal(step(cell, x, h, dt, grad=False), before)  # (documented: clear_cache)
    fresh = step(cell, x, h, dt, grad=True)
    assert not torch.allclose(fresh, before)
    cell.clear_cache()
    torch.testing.assert_close(step(cell, x, h, dt, grad=False), fresh, rtol=0, atol=1e-6)


@pytest.mark.parametrize("kind", CELLS)
def test_cache_follows_optimizer_steps(kind: str) -> None:
    cell, x, h, dt = make(kind)
    before = step(cell, x, h, dt, grad=False)
    opt = torch.optim.SGD(cell.parameters(), lr=0.5)
    cell(x, h, dt)[1].square().sum().backward()
    opt.step()
    after = step(cell, x, h, dt, grad=False)
    assert not torch.allclose(after, before)
    # Relative: after this large step LTC states reach ~1e4, and its inference step (native, one
    # call) and autograd path compute sigmoids with different exp implementations, ulps apart.
    torch.testing.assert_close(after, step(cell, x, h, dt, grad=True), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kind", CELLS)
def test_cache_follows_dtype_moves_there_and_back(kind: str) -> None:
    cell, x, h, dt = make(kind)
    y32 = step(cell, x, h, dt, grad=False)
    cell.double()
    y64 = step(cell, x, h.double(), dt, grad=False)
    assert y64.dtype == torch.float64
    torch.testing.assert_close(y64, step(cell, x, h.double(), dt, grad=True), rtol=0, atol=1e-12)
    torch.testing.assert_close(y64.float(), y32, rtol=0, atol=1e-6)
    cell.float()  # back: freed storages may be reused at the same address, the moves clear
    assert torch.equal(step(cell, x, h, dt, grad=False), y32)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("kind", CELLS)
def test_cache_follows_device_moves(kind: str) -> None:
    cell, x, h, dt = make(kind)
    y_cpu = step(cell, x, h, dt, grad=False)
    cell.cuda()
    y_gpu = step(cell, x.cuda(), h.cuda(), dt.cuda(), grad=False)
    assert y_gpu.is_cuda
    torch.testing.assert_close(y_gpu.cpu(), y_cpu, rtol=0, atol=1e-5)
    cell.cpu()
    torch.testing.assert_close(step(cell, x, h, dt, grad=False), y_cpu, rtol=0, atol=1e-6)
