"""LTC kernels (liquidcore.functional.ltc): analytic references, the solver table, gradients.

The cell-level tests (ncps parity, Δt patterns, round trips) are in ``test_ltc.py``.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest
import torch
from torch import Tensor

from liquidcore.functional.ltc_fold import sparse_synapses
from liquidcore.functional.ltc_fused import FusedSemiImplicit
from liquidcore.functional.ltc_synapses import (
    DenseSynapses,
    SparseSynapses,
    SynapseIndex,
    Synapses,
    currents,
    synapse_index,
)
from liquidcore.functional.ltc_unroll import SOLVERS, euler, get_solver, rk4, semi_implicit

DTYPES = [torch.float32, torch.float64]
PATHS = ["dense", "sparse"]


def random_synapses(
    S: int, H: int, *, density: float, dtype: torch.dtype, seed: int, path: str, gain: float = 1.0
) -> tuple[Synapses, DenseSynapses]:
    """Random effective synapse parameters in ``path``'s form, and the dense form of the same."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(S, H, generator=g) < density
    mask[0, 0] = True
    sigma = (torch.rand(S, H, generator=g) * 5 + 3) * gain
    mu = torch.rand(S, H, generator=g) * 0.5 + 0.3
    w = (torch.rand(S, H, generator=g) + 0.001) * mask
    erev = torch.rand(S, H, generator=g) * 4 - 2
    dense = DenseSynapses(*(t.to(dtype) for t in (sigma, mu, w, erev)))
    if path == "dense":
        return dense, dense
    src, dst = torch.nonzero(mask, as_tuple=True)
    idx = synapse_index(src, dst, S, H)
    return sparse_synapses(*dense, idx), dense


def pack(p: tuple[Tensor, ...], idx: SynapseIndex, path: str) -> Synapses:
    """``(sigma, mu, w, erev)`` ``[S, H]`` in ``path``'s form."""
    sigma, mu, w, erev = p
    if path == "sparse":
        return sparse_synapses(sigma, mu, w, erev, idx)
    return DenseSynapses(sigma, mu, w, erev)


def leak(H: int, dtype: torch.dtype, seed: int) -> tuple[Tensor, Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    gleak = (torch.rand(H, generator=g) * 0.9 + 0.1).to(dtype)
    vleak = (torch.rand(H, generator=g) * 0.4 - 0.2).to(dtype)
    cm = (torch.rand(H, generator=g) * 0.2 + 0.4).to(dtype)
    return gleak, vleak, cm


def const_drive(
    gleak: Tensor, vleak: Tensor, T: int, B: int, extra: Tensor | None = None
) -> Tensor:
    """``[T, 2H, B]`` drive of the leak alone (plus ``extra`` ``[2H, B]`` sensory terms)."""
    d = torch.cat([gleak * vleak, gleak])[:, None].expand(-1, B)
    if extra is not None:
        d = d + extra
    return d.expand(T, -1, -1).contiguous()


# --- the solver table --------------------------------------------------------------------------


def test_solver_table() -> None:
    assert set(SOLVERS) == {"semi_implicit", "euler", "rk4"}
    for name, fn in SOLVERS.items():
        assert get_solver(name) is fn


def test_unknown_solver_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="semi_implicit, euler, rk4"):
        get_solver("dopri5")


def test_bad_shapes_are_refused() -> None:
    syn, _ = random_synapses(3, 3, density=1.0, dtype=torch.float64, seed=0, path="dense")
    v0 = torch.zeros(3, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="dt"):
        semi_implicit(v0, torch.zeros(1, 6, 2), torch.ones(1, 2), torch.ones(3), syn, 6)
    with pytest.raises(ValueError, match="unfolds"):
        euler(v0, torch.zeros(1, 6, 2), torch.ones(1, 1, 2), torch.ones(3), syn, 0)


# --- analytic references -----------------------------------------------------------------------


def pure_leak(solver: str, unfolds: int, path: str) -> tuple[Tensor, Tensor]:
    """(solver's state, exact solution) of a pure leak: all synapses silent (w = 0)."""
    H, B, T = 6, 3, 2
    dtype = torch.float64
    syn, dense = random_synapses(H, H, density=0.5, dtype=dtype, seed=1, path=path)
    if isinstance(syn, SparseSynapses):
        syn = syn._replace(reduce_w=torch.zeros_like(syn.reduce_w))
    else:
        syn = dense._replace(w=torch.zeros_like(dense.w))
    gleak, vleak, cm = leak(H, dtype, 2)
    v0 = torch.randn(H, B, dtype=dtype, generator=torch.Generator().manual_seed(3))
    dt = torch.tensor([0.3, 1.0, 2.5], dtype=dtype).expand(T, 1, B).contiguous()
    out = get_solver(solver)(v0, const_drive(gleak, vleak, T, B), dt, cm, syn, unfolds)
    t = dt.sum(0)  # total elapsed time per stream
    exact = vleak[:, None] + (v0 - vleak[:, None]) * torch.exp(-gleak[:, None] * t / cm[:, None])
    return out[-1], exact


@pytest.mark.parametrize("path", PATHS)
def test_pure_leak_rk4_matches_the_exponential(path: str) -> None:
    got, exact = pure_leak("rk4", 6, path)
    torch.testing.assert_close(got, exact, rtol=0, atol=2e-4)
    got, exact = pure_leak("rk4", 48, path)
    torch.testing.assert_close(got, exact, rtol=0, atol=1e-8)
    # fourth order: doubling the unfolds divides the error by about 16
    e1 = (pure_leak("rk4", 24, path)[0] - exact).abs().max()
    e2 = (pure_leak("rk4", 48, path)[0] - exact).abs().max()
    assert 12 < float(e1 / e2) < 20


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("solver", ["euler", "semi_implicit"])
def test_pure_leak_first_order_solvers_converge(solver: str, path: str) -> None:
    errors = []
    for unfolds in (6, 60, 600):
        got, exact = pure_leak(solver, unfolds, path)
        errors.append(float((got - exact).abs().max()))
    # first order: ten times the unfolds, about a tenth of the error
    assert errors[0] < 0.2
    for coarse, fine in itertools.pairwise(errors):
        assert 7 < coarse / fine < 13
    assert errors[-1] < 2e-3


@pytest.mark.parametrize("path", PATHS)
def test_semi_implicit_with_a_huge_step_reaches_the_fixed_point(path: str) -> None:
    """Constant input: the state where the ODE's right-hand side ``A - Bd·v`` vanishes."""
    H, S, B = 8, 4, 5
    dtype = torch.float64
    rec, rec_dense = random_synapses(H, H, density=0.5, dtype=dtype, seed=4, path=path, gain=0.3)
    sen, _ = random_synapses(S, H, density=0.6, dtype=dtype, seed=5, path="dense")
    gleak, vleak, cm = leak(H, dtype, 6)
    x = torch.randn(S, B, dtype=dtype, generator=torch.Generator().manual_seed(7))
    drive = const_drive(gleak, vleak, 1, B, currents(x, sen))
    v = torch.zeros(H, B, dtype=dtype)
    dt = torch.full((1, 1, B), 1e6, dtype=dtype)
    for _ in range(200):
        v = semi_implicit(v, drive, dt, cm, rec, 6)[-1]
    z = currents(v, rec_dense) + drive[0]
    residual = z[:H] - z[H:] * v
    assert float(residual.abs().max()) < 1e-10
    # and an explicit integration with small steps arrives at the same state
    u = torch.zeros(H, B, dtype=dtype)
    for _ in range(60):
        u = rk4(u, drive, torch.full((1, 1, B), 1.0, dtype=dtype), cm, rec, 8)[-1]
    torch.testing.assert_close(u, v, rtol=0, atol=1e-8)


def test_semi_implicit_equals_ncps_formula() -> None:
    """For Δt > 0 and cm > 0 the rewritten step is ncps's ``(cm_t·v + A)/(cm_t + Bd)``."""
    H, B, U = 7, 4, 3
    dtype = torch.float64
    syn, dense = random_synapses(H, H, density=0.4, dtype=dtype, seed=8, path="sparse")
    gleak, vleak, cm = leak(H, dtype, 9)
    v0 = torch.randn(H, B, dtype=dtype)
    drive = const_drive(gleak, vleak, 1, B)
    dt = torch.rand(1, 1, B, dtype=dtype) + 0.2
    got = semi_implicit(v0, drive, dt, cm, syn, U)[0]
    v = v0
    cm_t = cm[:, None] / (dt[0] / U)
    for _ in range(U):
        z = currents(v, dense) + drive[0]
        v = (cm_t * v + z[:H]) / (cm_t + z[H:])
    torch.testing.assert_close(got, v, rtol=0, atol=1e-13)


# --- Δt edge cases at the kernel ----------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_zero_dt_and_zero_cm(dtype: torch.dtype, path: str) -> None:
    H, B = 5, 4
    syn, _ = random_synapses(H, H, density=0.5, dtype=dtype, seed=10, path=path)
    gleak, vleak, cm = leak(H, dtype, 11)
    v0 = torch.randn(H, B, dtype=dtype)
    drive = const_drive(gleak, vleak, 2, B)
    zero = torch.zeros(2, 1, B, dtype=dtype)
    # Δt = 0: unchanged, for cm > 0 and cm = 0 alike
    for c in (cm, torch.zeros_like(cm)):
        out = semi_implicit(v0, drive, zero, c, syn, 6)
        assert torch.equal(out[-1], v0)
    # cm = 0, Δt > 0: every sub-step is the algebraic v' = A(v)/Bd(v); finite
    out = semi_implicit(v0, drive, torch.ones(2, 1, B, dtype=dtype), torch.zeros_like(cm), syn, 6)
    assert torch.isfinite(out).all()
    for solver in ("euler", "rk4"):
        assert torch.equal(get_solver(solver)(v0, drive, zero, cm, syn, 4)[-1], v0)


# --- gradients ----------------------------------------------------------------------------------


def small_problem(path: str, requires_dt: bool = True) -> tuple[tuple[Tensor, ...], Synapses]:
    H, B, T = 4, 3, 3
    dtype = torch.float64
    syn, _ = random_synapses(H, H, density=0.6, dtype=dtype, seed=12, path=path)
    g = torch.Generator().manual_seed(13)
    v0 = torch.randn(H, B, dtype=dtype, generator=g).requires_grad_()
    drive = (torch.rand(T, 2 * H, B, dtype=dtype, generator=g) + 0.1).requires_grad_()
    dt = torch.rand(T, 1, B, dtype=dtype, generator=g) * 2 + 0.1
    dt[1, 0, 0] = 0.0  # a zero Δt inside the sequence
    cm = (torch.rand(H, dtype=dtype, generator=g) + 0.4).requires_grad_()
    return (v0, drive, dt.requires_grad_(requires_dt), cm), syn


def test_gradcheck_fused_function(native_mode: str) -> None:
    """The analytic backward of the fused loop against finite differences, every input, on the
    torch path and on the native kernels."""
    (v0, drive, dt, cm), syn = small_problem("sparse")
    assert isinstance(syn, SparseSynapses)
    cu = (cm.detach()[:, None] * 2).requires_grad_()
    pair_w = syn.pair_w.detach().clone().requires_grad_()
    reduce_w = syn.reduce_w.detach().clone().requires_grad_()

    def fn(*args: Tensor) -> Tensor:
        out = FusedSemiImplicit.apply(*args, syn.idx, 2)
        assert isinstance(out, Tensor)
        return out

    assert torch.autograd.gradcheck(fn, (v0, drive, dt, cu, pair_w, reduce_w))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("solver", ["semi_implicit", "euler", "rk4"])
def test_gradcheck_solvers(solver: str, path: str) -> None:
    """Every solver on both synapse forms, through the synapse parameters too."""
    (v0, drive, dt, cm), _ = small_problem(path)
    H = v0.shape[0]
    _, dense = random_synapses(H, H, density=0.6, dtype=torch.float64, seed=12, path=path)
    params = tuple(t.clone().requires_grad_() for t in dense)
    src, dst = torch.nonzero(dense.w, as_tuple=True)
    idx = synapse_index(src, dst, H, H)

    def fn(v0: Tensor, drive: Tensor, dt: Tensor, cm: Tensor, *p: Tensor) -> Tensor:
        syn = pack(p, idx, path)
        return get_solver(solver)(v0, drive, dt, cm, syn, 2)

    assert torch.autograd.gradcheck(fn, (v0, drive, dt, cm, *params))


@pytest.mark.parametrize("path", PATHS)
def test_gradcheck_currents(path: str) -> None:
    S, H, N = 3, 4, 5
    _, dense = random_synapses(S, H, density=0.5, dtype=torch.float64, seed=14, path=path)
    params = tuple(t.clone().requires_grad_() for t in dense)
    src, dst = torch.nonzero(dense.w, as_tuple=True)
    idx = synapse_index(src, dst, S, H)
    x = torch.randn(S, N, dtype=torch.float64, requires_grad=True)

    def fn(x: Tensor, *p: Tensor) -> Tensor:
        syn = pack(p, idx, path)
        return currents(x, syn)

    assert torch.autograd.gradcheck(fn, (x, *params))


@pytest.mark.parametrize("dtype", DTYPES)
def test_fused_and_plain_paths_agree_in_values_and_gradients(dtype: torch.dtype) -> None:
    H, B, T = 9, 6, 5
    syn, dense = random_synapses(H, H, density=0.3, dtype=dtype, seed=15, path="sparse")
    gleak, vleak, cm = leak(H, dtype, 16)
    g = torch.Generator().manual_seed(17)
    v0 = torch.randn(H, B, dtype=dtype, generator=g)
    extra = torch.rand(2 * H, B, dtype=dtype, generator=g)
    dt = (10 ** (torch.rand(T, 1, B, generator=g) * 4 - 2)).to(dtype)
    dt[2, 0, :2] = 0.0
    grads = []
    outs = []
    for s in (syn, dense):
        leaves = [t.clone().requires_grad_() for t in (v0, cm, extra)]
        drive = const_drive(gleak, vleak, T, B, leaves[2])
        out = semi_implicit(leaves[0], drive, dt, leaves[1], s, 6)
        (out * torch.linspace(-1, 1, B, dtype=dtype)).sum().backward()
        outs.append(out.detach())
        grads.append([t.grad for t in leaves])
    tol: dict[str, Any] = {"rtol": 1e-5, "atol": 1e-5}
    if dtype == torch.float64:
        tol = {"rtol": 1e-11, "atol": 1e-12}
    torch.testing.assert_close(outs[0], outs[1], **tol)
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, **tol)


def test_no_grad_path_does_not_touch_its_inputs() -> None:
    H, B = 5, 3
    syn, _ = random_synapses(H, H, density=0.5, dtype=torch.float32, seed=18, path="sparse")
    gleak, vleak, cm = leak(H, torch.float32, 19)
    v0 = torch.randn(H, B)
    drive = const_drive(gleak, vleak, 2, B)
    dt = torch.ones(2, 1, B)
    copies = [t.clone() for t in (v0, drive, dt)]
    with torch.inference_mode():
        semi_implicit(v0, drive, dt, cm, syn, 6)
    for a, b in zip((v0, drive, dt), copies, strict=True):
        assert torch.equal(a, b)


def test_gradient_is_finite_at_zero_dt_and_zero_cm() -> None:
    (v0, drive, dt, cm), syn = small_problem("sparse")
    with torch.no_grad():
        dt.zero_()
    semi_implicit(v0, drive, dt, cm, syn, 3).sum().backward()
    for t in (v0, drive, dt, cm):
        assert t.grad is not None
        assert torch.isfinite(t.grad).all()
        t.grad = None
    assert dt.grad is None
    # cm = 0 as well: still finite for everything but Δt. With cm = 0 the state jumps from v
    # (Δt = 0) to A/Bd (any Δt > 0), so ∂v'/∂Δt at Δt = 0 is genuinely infinite.
    with torch.no_grad():
        cm.zero_()
    out = semi_implicit(v0, drive, dt, cm, syn, 3)
    assert torch.equal(out[-1], v0.detach())
    out.sum().backward()
    for t in (v0, drive, cm):
        assert t.grad is not None
        assert torch.isfinite(t.grad).all()
    assert v0.grad is not None
    assert torch.equal(v0.grad, torch.full_like(v0, out.shape[0]))
    assert drive.grad is not None
    assert not drive.grad.any()


def test_synapse_index_layout() -> None:
    src = torch.tensor([2, 0, 1, 0])
    dst = torch.tensor([0, 1, 1, 2])
    idx = synapse_index(src, dst, 3, 4)
    assert idx.dst.tolist() == [0, 1, 1, 2]  # sorted by (dst, src)
    assert idx.src.tolist() == [2, 0, 1, 0]
    assert idx.reduce_offsets.tolist() == [0, 1, 3, 4, 4, 5, 7, 8]  # unit 3 has no synapse
    assert idx.flat.tolist() == [8, 1, 5, 2]
    assert idx.src_offsets.tolist() == [0, 2, 3]
    assert [int(idx.src[e]) for e in idx.by_src] == [0, 0, 1, 2]
    assert math.isclose(float(idx.pair_offsets[-1]), 6)
