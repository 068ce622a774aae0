"""LTCCell: values against ncps 1.0.1 (the reference), Δt edge cases, bounds, sequences,
gradients, round trips.

ncps's ``LTCCell`` is the oracle when it is stepped with Δt shaped ``[B, 1]``. Its ``LTC``
wrapper squeezes timespans to ``[B]`` and is then wrong when ``B == units`` (issues 81-83), and
its cell returns NaN for Δt = 0: ``test_ncps_*`` documents both by asserting them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import torch
from ncps import wirings as nw
from ncps.torch import LTC as NcpsLtc  # noqa: N811 - ncps's class name
from ncps.torch import LTCCell as NcpsLTCCell
from torch import Tensor

from liquidcore import wirings as ours_w
from liquidcore.cells.base import LiquidCell
from liquidcore.cells.ltc import MAPPINGS, LTCCell

F_IN = 5
DTYPES = [torch.float32, torch.float64]
PATHS = ["dense", "sparse"]
TOL: dict[torch.dtype, dict[str, Any]] = {
    torch.float32: {"rtol": 0.0, "atol": 1e-5},
    torch.float64: {"rtol": 0.0, "atol": 1e-11},
}

# The same wiring twice: ncps's and ours, built from the same arguments.
WIRINGS: dict[str, tuple[Callable[[], Any], Callable[[], ours_w.Wiring]]] = {
    "fully_connected": (lambda: nw.FullyConnected(8, 3), lambda: ours_w.FullyConnected(8, 3)),
    "random": (
        lambda: nw.Random(10, 4, sparsity_level=0.5, random_seed=3),
        lambda: ours_w.Random(10, 4, sparsity_level=0.5, random_seed=3),
    ),
    "ncp": (
        lambda: nw.NCP(4, 3, 2, 2, 2, 2, 2, seed=5),
        lambda: ours_w.NCP(4, 3, 2, 2, 2, 2, 2, seed=5),
    ),
    "auto_ncp": (lambda: nw.AutoNCP(12, 3, seed=7), lambda: ours_w.AutoNCP(12, 3, seed=7)),
}
MAPPING_PAIRS = [("affine", "affine"), ("linear", "none"), ("none", "linear")]


def randomize(cell: torch.nn.Module, seed: int) -> None:
    """Random weights in every parameter, keeping conductances and capacitances positive."""
    g = torch.Generator().manual_seed(seed)
    ranges = {
        "gleak": (0.05, 1.0),
        "vleak": (-0.5, 0.5),
        "cm": (0.3, 0.7),
        "sigma": (2.0, 8.0),
        "mu": (0.2, 0.8),
        "w": (0.01, 1.0),
        "erev": (-1.5, 1.5),
        "input_w": (0.5, 1.5),
        "input_b": (-0.3, 0.3),
        "output_w": (-2.0, 2.0),
        "output_b": (-1.0, 1.0),
    }
    with torch.no_grad():
        for name, p in cell.named_parameters():
            if not p.requires_grad:
                continue
            lo, hi = ranges[name.removeprefix("sensory_")]
            p.copy_(torch.rand(p.shape, generator=g, dtype=torch.float64) * (hi - lo) + lo)


def make_pair(
    kind: str = "auto_ncp",
    *,
    implicit: bool = False,
    mappings: tuple[str, str] = ("affine", "affine"),
    dtype: torch.dtype = torch.float32,
    path: str = "auto",
    solver: str = "semi_implicit",
    seed: int = 0,
) -> tuple[NcpsLTCCell, LTCCell]:
    """An ncps cell and ours on the same wiring and the same random weights."""
    make_ncps, make_ours = WIRINGS[kind]
    ref = NcpsLTCCell(make_ncps(), F_IN, *mappings, implicit_param_constraints=implicit)
    randomize(ref, seed)
    cell = LTCCell(
        make_ours(),
        in_features=F_IN,
        input_mapping=mappings[0],
        output_mapping=mappings[1],
        implicit_param_constraints=implicit,
        synapse_path=path,
        solver=solver,
    )
    assert (ref._wiring.adjacency_matrix == cell.wiring.adjacency_matrix).all()
    assert (ref._wiring.sensory_adjacency_matrix == cell.wiring.sensory_adjacency_matrix).all()
    cell.load_state_dict(ref.state_dict())
    return ref.to(dtype), cell.to(dtype)


def dt_pattern(name: str, batch: int, steps: int, dtype: torch.dtype, seed: int = 11) -> Tensor:
    """Δt ``[batch, steps]`` for a named pattern."""
    g = torch.Generator().manual_seed(seed)
    if name == "regular":
        return torch.full((batch, steps), 0.5, dtype=dtype)
    if name == "irregular":  # per stream and per step, over four decades
        return (10 ** (torch.rand(batch, steps, generator=g) * 4 - 2)).to(dtype)
    if name == "zero":
        return torch.zeros(batch, steps, dtype=dtype)
    if name == "tiny":
        return torch.full((batch, steps), 1e-9, dtype=dtype)
    if name == "huge":
        return torch.full((batch, steps), 1e9, dtype=dtype)
    raise AssertionError(name)


def inputs(
    cell: LTCCell, batch: int, steps: int, dtype: torch.dtype, seed: int = 3
) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, steps, F_IN, generator=g).to(dtype)
    h = (torch.rand(batch, cell.state_size, generator=g) * 2 - 1).to(dtype)
    return x, h


# --- parity with ncps ----------------------------------------------------------------------------


@pytest.mark.parametrize("pattern", ["regular", "irregular"])
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("mappings", MAPPING_PAIRS)
@pytest.mark.parametrize("implicit", [False, True])
@pytest.mark.parametrize("kind", list(WIRINGS))
def test_steps_match_ncps(
    kind: str, implicit: bool, mappings: tuple[str, str], path: str, pattern: str
) -> None:
    ref, cell = make_pair(kind, implicit=implicit, mappings=mappings, path=path)
    B, T = 6, 4
    x, h = inputs(cell, B, T, torch.float32)
    dt = dt_pattern(pattern, B, T, torch.float32)
    h_ref = h
    with torch.no_grad():
        for t in range(T):
            y_ref, h_ref = ref(x[:, t], h_ref, dt[:, t : t + 1])
            y, h = cell(x[:, t], h, dt[:, t : t + 1])
            torch.testing.assert_close(y, y_ref, **TOL[torch.float32])
            torch.testing.assert_close(h, h_ref, **TOL[torch.float32])


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("implicit", [False, True])
@pytest.mark.parametrize("kind", list(WIRINGS))
def test_gradients_match_ncps(kind: str, implicit: bool, path: str) -> None:
    """Every parameter's gradient, and the initial state's, over a short irregular sequence."""
    ref, cell = make_pair(kind, implicit=implicit, path=path, dtype=torch.float64)
    B, T = 4, 5
    x, h0 = inputs(cell, B, T, torch.float64)
    dt = dt_pattern("irregular", B, T, torch.float64)
    weights = torch.linspace(-1, 2, cell.output_size, dtype=torch.float64)
    grads = []
    for module in (ref, cell):
        h = h0.clone().requires_grad_()
        state, loss = h, torch.zeros((), dtype=torch.float64)
        for t in range(T):
            y, state = module(x[:, t], state, dt[:, t : t + 1])
            loss = loss + (y * weights).sum() + 0.1 * state.square().sum()
        named = {n: p for n, p in module.named_parameters() if p.requires_grad}
        got = torch.autograd.grad(loss, [h, *named.values()])
        grads.append(dict(zip(["h0", *named], got, strict=True)))
    assert grads[0].keys() == grads[1].keys()
    for name, g_ref in grads[0].items():
        torch.testing.assert_close(grads[1][name], g_ref, rtol=1e-9, atol=1e-11, msg=name)


def test_same_seed_gives_ncps_initial_weights() -> None:
    torch.manual_seed(42)
    ref = NcpsLTCCell(nw.AutoNCP(12, 3, seed=7), F_IN)
    torch.manual_seed(42)
    cell = LTCCell(ours_w.AutoNCP(12, 3, seed=7), in_features=F_IN)
    ref_sd, sd = ref.state_dict(), cell.state_dict()
    assert set(sd) == set(ref_sd)
    for k, v in ref_sd.items():
        assert torch.equal(sd[k], v), k


def test_state_dict_keys_and_ncps_key_map() -> None:
    ref, cell = make_pair("ncp")
    assert set(cell.state_dict()) == set(ref.state_dict())
    wrapper = NcpsLtc(F_IN, nw.AutoNCP(12, 3, seed=7))
    key_map = LTCCell(ours_w.AutoNCP(12, 3, seed=7), in_features=F_IN).ncps_key_map()
    assert set(key_map) == set(wrapper.state_dict())
    assert all(k == f"rnn_cell.{v}" for k, v in key_map.items())


# --- Δt patterns -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_zero_dt_leaves_the_state_and_ncps_gives_nan(dtype: torch.dtype, path: str) -> None:
    ref, cell = make_pair("auto_ncp", dtype=dtype, path=path)
    B = 5
    x, h = inputs(cell, B, 1, dtype)
    dt = torch.zeros(B, 1, dtype=dtype)
    with torch.no_grad():
        y, h_new = cell(x[:, 0], h, dt)
        assert torch.equal(h_new, h)
        torch.testing.assert_close(y, cell.output_of(h), rtol=0, atol=0)
        _, h_ref = ref(x[:, 0], h, dt)
    assert torch.isnan(h_ref).all()  # ncps: cm / (0 / unfolds)


@pytest.mark.parametrize("pattern", ["regular", "irregular", "zero", "tiny", "huge"])
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_sequence_equals_stepping(dtype: torch.dtype, path: str, pattern: str) -> None:
    """``forward_sequence`` (sensory drive at once, fused loop) equals the base class's loop of
    single steps, masked steps included; so do the gradients."""
    _, cell = make_pair("auto_ncp", implicit=True, dtype=dtype, path=path)
    B, T = 4, 6
    x, h0 = inputs(cell, B, T, dtype)
    dt = dt_pattern(pattern, B, T, dtype)
    mask = torch.rand(B, T, generator=torch.Generator().manual_seed(1)) > 0.3
    mask[:, 0] = False
    results = []
    for run in (cell.forward_sequence, lambda *a: LiquidCell.forward_sequence(cell, *a)):
        h = h0.clone().requires_grad_()
        y, h_T = run(x, h, dt, mask)
        loss = (y * torch.linspace(-1, 1, y.shape[-1], dtype=dtype)).sum() + h_T.sum()
        g = torch.autograd.grad(loss, [h, cell.w, cell.sensory_mu, cell.cm])
        results.append((y.detach(), h_T.detach(), *g))
    tol: dict[str, Any] = {"rtol": 1e-5, "atol": 1e-5}
    if dtype == torch.float64:
        tol = {"rtol": 1e-10, "atol": 1e-11}
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, **tol)


@pytest.mark.parametrize("path", PATHS)
def test_masked_steps_keep_the_state(path: str) -> None:
    _, cell = make_pair("ncp", path=path)
    B, T = 3, 5
    x, h = inputs(cell, B, T, torch.float32)
    x[1, 2] = float("nan")  # a masked-out step may carry garbage
    dt = dt_pattern("irregular", B, T, torch.float32)
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[1, 2] = False
    with torch.no_grad():
        y, _ = cell.forward_sequence(x, h, dt, mask)
        y_prefix, h2 = cell.forward_sequence(x[:, :2], h, dt[:, :2])
        _, h3 = cell.forward_sequence(x[:, :3], h, dt[:, :3], mask[:, :3])
    assert torch.isfinite(y).all()
    assert torch.equal(h3[1], h2[1])
    torch.testing.assert_close(y[1, 2], cell.output_of(h2)[1], rtol=0, atol=0)
    # Same batch, same per-step kernels: a sequence's prefix is stepped by the very same calls.
    torch.testing.assert_close(y[:, :2], y_prefix, rtol=0, atol=0)


@pytest.mark.parametrize("path", PATHS)
def test_per_sample_dt_with_batch_equal_to_units(path: str) -> None:
    """B == units: every stream must evolve with its own Δt, as if it ran alone.

    ncps's ``LTC`` wrapper squeezes timespans ``[B, T, 1]`` to ``[B]`` and divides ``cm [units]``
    by it: with B == units that broadcasts Δt across *units* and is silently wrong (with any
    other B > 1 it raises). This test pins both: ours equals the per-stream runs, ncps's wrapper
    does not.
    """
    torch.manual_seed(0)
    wrapper = NcpsLtc(F_IN, nw.AutoNCP(12, 3, seed=7), implicit_param_constraints=True)
    randomize(wrapper.rnn_cell, 1)
    cell = LTCCell(
        ours_w.AutoNCP(12, 3, seed=7), F_IN, implicit_param_constraints=True, synapse_path=path
    )
    cell.load_state_dict(wrapper.rnn_cell.state_dict())
    B, T = cell.state_size, 4
    assert B == 12
    x, h = inputs(cell, B, T, torch.float32)
    dt = dt_pattern("irregular", B, T, torch.float32)
    with torch.no_grad():
        y, _ = cell.forward_sequence(x, h, dt)
        alone = torch.cat(
            [cell.forward_sequence(x[i : i + 1], h[i : i + 1], dt[i : i + 1])[0] for i in range(B)]
        )
        y_ncps, _ = wrapper(x, h, timespans=dt[..., None])
    torch.testing.assert_close(y, alone, **TOL[torch.float32])
    assert (y_ncps - alone).abs().max() > 1e-2  # ncps's wrapper mixes the streams' Δt up


HULL_DTS = [0.0, 1e-9, 1e-3, 1.0, 1e3, 1e9]


@pytest.mark.parametrize("dt_value", HULL_DTS)
@pytest.mark.parametrize("implicit", [False, True])
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_state_stays_in_the_hull(
    dtype: torch.dtype, path: str, implicit: bool, dt_value: float
) -> None:
    """With non-negative conductances every sub-step is a weighted average, so the state stays
    within [min, max] of {0, initial state, vleak, erev, sensory_erev}, for any Δt."""
    _, cell = make_pair("auto_ncp", implicit=implicit, dtype=dtype, path=path, seed=5)
    with torch.no_grad():
        g = torch.Generator().manual_seed(9)
        cell.erev.copy_(torch.rand(cell.erev.shape, generator=g) * 6 - 3)
        cell.sensory_erev.copy_(torch.rand(cell.sensory_erev.shape, generator=g) * 4 - 1)
        cell.vleak.copy_(torch.rand(cell.vleak.shape, generator=g) * 2 - 1)
    B, T = 8, 10
    x, h = inputs(cell, B, T, dtype)
    x = x * 50.0  # large inputs drive the sensory synapses to saturation
    h = h * 4.0
    values = [torch.zeros(1, dtype=dtype), h, cell.vleak, cell.erev, cell.sensory_erev]
    lo = min(float(v.detach().min()) for v in values)
    hi = max(float(v.detach().max()) for v in values)
    tol = (1e-5 if dtype == torch.float32 else 1e-12) * max(abs(lo), abs(hi))
    dt = torch.full((B, T), dt_value, dtype=dtype)
    with torch.no_grad():
        y, _ = cell.forward_sequence(x, h, dt)
        state = h
        for t in range(T):
            _, state = cell(x[:, t], state, dt[:, t : t + 1])
            assert torch.isfinite(state).all()
            assert float(state.min()) >= lo - tol
            assert float(state.max()) <= hi + tol
    assert torch.isfinite(y).all()
    if dt_value == 0.0:
        assert torch.equal(state, h)


def test_zero_capacitance_after_explicit_clipping() -> None:
    """Explicit constraints clip cm at 0; the step stays finite (the algebraic v' = A/Bd)."""
    _, cell = make_pair("ncp")
    with torch.no_grad():
        cell.cm.fill_(-0.5)
        cell.w[0, 0] = -1.0
    cell.apply_constraints()
    assert not cell.cm.any()
    assert float(cell.w.detach().min()) >= 0.0
    x, h = inputs(cell, 3, 2, torch.float32)
    with torch.no_grad():
        _, h1 = cell(x[:, 0], h, torch.ones(3, 1))
        _, h0 = cell(x[:, 0], h, torch.zeros(3, 1))
    assert torch.isfinite(h1).all()
    assert torch.equal(h0, h)


def test_apply_constraints_is_a_no_op_in_implicit_mode() -> None:
    _, cell = make_pair("ncp", implicit=True)
    with torch.no_grad():
        cell.cm.fill_(-0.5)
    cell.apply_constraints()
    assert float(cell.cm.detach().max()) == -0.5


# --- paths and solvers -------------------------------------------------------------------------


@pytest.mark.parametrize("solver", ["semi_implicit", "euler", "rk4"])
@pytest.mark.parametrize("kind", list(WIRINGS))
def test_dense_and_sparse_paths_agree(kind: str, solver: str) -> None:
    """Values and gradients, in float64, for every solver."""
    results = []
    for path in PATHS:
        _, cell = make_pair(kind, implicit=True, dtype=torch.float64, path=path, solver=solver)
        x, h = inputs(cell, 3, 4, torch.float64)
        dt = dt_pattern("irregular", 3, 4, torch.float64) * 0.1  # in the explicit solvers' range
        y, h_T = cell.forward_sequence(x, h, dt)
        params = [p for p in cell.parameters() if p.requires_grad]
        grads = torch.autograd.grad(y.sum() + h_T.square().sum(), params)
        results.append((y.detach(), *grads))
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_solvers_integrate_the_same_ode() -> None:
    """With enough unfolds the three solvers agree (RK4 with 200 is the reference); the two
    first-order ones get ten times closer with ten times the unfolds."""

    def final_state(solver: str, unfolds: int) -> Tensor:
        _, cell = make_pair("auto_ncp", dtype=torch.float64, solver=solver)
        cell.ode_unfolds = unfolds
        x, h = inputs(cell, 2, 2, torch.float64)
        with torch.no_grad():
            return cell.forward_sequence(x, h, torch.full((2, 2), 0.5, dtype=torch.float64))[1]

    reference = final_state("rk4", 200)
    torch.testing.assert_close(final_state("rk4", 20), reference, rtol=0, atol=1e-7)
    for solver in ("euler", "semi_implicit"):
        coarse = float((final_state(solver, 100) - reference).abs().max())
        fine = float((final_state(solver, 1000) - reference).abs().max())
        assert fine < 1e-3
        assert 7 < coarse / fine < 13


def test_gradcheck_cell_inputs() -> None:
    """Gradients with respect to inputs, state and Δt through the whole cell (sparse, fused)."""
    _, cell = make_pair("ncp", implicit=True, dtype=torch.float64, path="sparse")
    x, h = inputs(cell, 2, 3, torch.float64)
    dt = dt_pattern("irregular", 2, 3, torch.float64)
    args = (x.requires_grad_(), h.requires_grad_(), dt.requires_grad_())
    assert torch.autograd.gradcheck(lambda *a: cell.forward_sequence(*a)[0], args)


def test_loading_a_different_mask_rebuilds_the_synapse_index() -> None:
    _, sparse = make_pair("random", path="sparse")
    _, dense = make_pair("random", path="dense")
    sd = sparse.state_dict()
    sd["sparsity_mask"] = torch.ones_like(sd["sparsity_mask"])
    sd["sensory_sparsity_mask"][0] = 0.0
    sparse.load_state_dict(sd)
    dense.load_state_dict(sd)
    x, h = inputs(sparse, 3, 3, torch.float32)
    dt = dt_pattern("irregular", 3, 3, torch.float32)
    with torch.no_grad():
        torch.testing.assert_close(
            sparse.forward_sequence(x, h, dt)[0],
            dense.forward_sequence(x, h, dt)[0],
            **TOL[torch.float32],
        )


def test_inference_cache_follows_parameter_updates() -> None:
    _, cell = make_pair("auto_ncp")
    x, h = inputs(cell, 3, 1, torch.float32)
    dt = torch.ones(3, 1)
    with torch.inference_mode():
        y0, _ = cell(x[:, 0], h, dt)
    with torch.no_grad():
        cell.sigma.mul_(0.5)  # bumps the version counter
    with torch.inference_mode():
        y1, _ = cell(x[:, 0], h, dt)
    y_fresh, _ = cell(x[:, 0], h, dt)  # autograd on: nothing cached
    assert not torch.allclose(y0, y1)
    # The cached (folded) inference kernel and the autograd path are different kernels: they agree
    # to float32 round-off (docs/numerics.md), not bit for bit on every CPU.
    torch.testing.assert_close(y1, y_fresh.detach(), rtol=0, atol=1e-6)
    cell.double()
    with torch.inference_mode():
        y2, _ = cell(x[:, 0].double(), h.double(), dt.double())
    torch.testing.assert_close(y2, y1.double(), rtol=0, atol=1e-6)


# --- config and validation -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(WIRINGS))
def test_config_round_trip(kind: str) -> None:
    from liquidcore.cells.registry import build_cell

    _, cell = make_pair(kind, implicit=True, mappings=("linear", "none"), solver="rk4")
    config = json.loads(json.dumps(cell.get_config()))
    assert config["type"] == "ltc"
    for rebuilt in (LTCCell.from_config(config), build_cell(config)):
        assert type(rebuilt) is LTCCell
        assert rebuilt.get_config() == config
        assert type(rebuilt.wiring) is type(cell.wiring)
        rebuilt.load_state_dict(cell.state_dict())
        x, h = inputs(cell, 2, 2, torch.float32)
        dt = torch.ones(2, 2)
        with torch.no_grad():
            torch.testing.assert_close(
                rebuilt.forward_sequence(x, h, dt), cell.forward_sequence(x, h, dt)
            )


def test_from_config_refuses_another_type() -> None:
    config = LTCCell(ours_w.FullyConnected(4), in_features=2).get_config()
    with pytest.raises(ValueError, match="type 'ltc'"):
        LTCCell.from_config({**config, "type": "cfc"})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"solver": "dopri5"}, "semi_implicit, euler, rk4"),
        ({"input_mapping": "tanh"}, ", ".join(MAPPINGS)),
        ({"output_mapping": "softmax"}, ", ".join(MAPPINGS)),
        ({"synapse_path": "csr"}, "auto, dense, sparse"),
        ({"ode_unfolds": 0}, "ode_unfolds"),
        ({"epsilon": -1.0}, "epsilon"),
    ],
)
def test_invalid_arguments(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LTCCell(ours_w.FullyConnected(4), in_features=2, **kwargs)


def test_unbuilt_wiring_needs_in_features() -> None:
    with pytest.raises(ValueError, match="in_features"):
        LTCCell(ours_w.AutoNCP(12, 3))
    cell = LTCCell(ours_w.AutoNCP(12, 3), in_features=4)
    assert (cell.input_size, cell.state_size, cell.output_size) == (4, 12, 3)
    built = ours_w.AutoNCP(12, 3)
    built.build(6)
    assert LTCCell(built).input_size == 6
