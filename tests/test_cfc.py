"""CfC cells: values against ncps 1.0.1 (the reference), closed forms, gradients, round trips.

ncps's cells are the oracle when they are stepped with Δt shaped ``[B, 1]``; its ``CfC`` wrapper
squeezes timespans to ``[B]`` and is then wrong (issues 81-83), which ``test_ncps_wrapper_*``
documents by asserting the difference.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import pytest
import torch
from ncps import wirings as ncps_wirings
from ncps.torch import CfC as NcpsCfC
from ncps.torch import CfCCell as NcpsCfCCell
from ncps.torch import WiredCfCCell as NcpsWiredCfCCell
from torch import Tensor, nn

from liquidcore.cells.base import LiquidCell
from liquidcore.cells.cfc import CfCCell, WiredCfCCell
from liquidcore.cells.mixed import MixedMemoryCell
from liquidcore.functional import cfc as fcfc
from liquidcore.functional.activations import (
    ACTIVATIONS,
    SIGMOID_FORMS,
    get_activation,
    lecun_tanh,
)

MODES = ["default", "no_gate", "pure"]
ACTS = ["lecun_tanh", "silu", "relu", "tanh", "gelu"]
DTYPES = [torch.float32, torch.float64]
ATOL = {torch.float32: 1e-5, torch.float64: 1e-10}
F_IN, HIDDEN, UNITS = 5, 8, 12


def dt_pattern(name: str, batch: int, steps: int, dtype: torch.dtype) -> Tensor:
    """Δt ``[batch, steps]`` for a named pattern."""
    g = torch.Generator().manual_seed(11)
    if name == "regular":
        return torch.full((batch, steps), 0.5, dtype=dtype)
    if name == "irregular":  # per stream and per step, over four decades
        return (10 ** (torch.rand(batch, steps, generator=g) * 4 - 2)).to(dtype)
    if name == "zero":
        return torch.zeros(batch, steps, dtype=dtype)
    if name == "huge":
        return torch.full((batch, steps), 1e9, dtype=dtype)
    raise AssertionError(name)


DT_PATTERNS = ["regular", "irregular", "zero", "huge"]


def make_pair(
    mode: str = "default",
    act: str = "lecun_tanh",
    layers: int = 1,
    dtype: torch.dtype = torch.float32,
    dropout: float = 0.0,
    seed: int = 0,
) -> tuple[NcpsCfCCell, CfCCell]:
    """An ncps cell and ours holding the same weights (copied through the key map)."""
    torch.manual_seed(seed)
    ref = NcpsCfCCell(F_IN, HIDDEN, mode, act, UNITS, layers, dropout)
    ours = CfCCell(F_IN, HIDDEN, mode, act, UNITS, layers, dropout)
    key_map = ours.ncps_key_map(prefix="")
    ours.load_state_dict({key_map[k]: v for k, v in ref.state_dict().items()})
    return ref.to(dtype).eval(), ours.to(dtype).eval()


def run_ncps_cell(ref: nn.Module, x: Tensor, h: Tensor, dt: Tensor) -> tuple[Tensor, Tensor]:
    """Step an ncps cell over ``x[B,T,F]`` with Δt ``[B,1]`` per step (the correct use)."""
    outs = []
    for t in range(x.shape[1]):
        out, h = ref(x[:, t], h, dt[:, t : t + 1])
        outs.append(out)
    return torch.stack(outs, 1), h


def grad_modes() -> list[Callable[[], object]]:
    """The three code paths: autograd on, no_grad (cached weights), inference_mode."""
    return [torch.enable_grad, torch.no_grad, torch.inference_mode]


# --- functional kernels ------------------------------------------------------------------------


def test_activation_table_values() -> None:
    x = torch.linspace(-6, 6, 101, dtype=torch.float64)
    torch.testing.assert_close(lecun_tanh(x), 1.7159 * torch.tanh(0.666 * x))
    assert get_activation("lecun_tanh") is lecun_tanh
    for name, form in SIGMOID_FORMS.items():
        folded = form.scale * torch.sigmoid(form.pre * x) + form.shift
        torch.testing.assert_close(folded, ACTIVATIONS[name](x), rtol=0, atol=1e-14)


def test_unknown_activation_and_mode_list_valid_names() -> None:
    with pytest.raises(ValueError, match="gelu, lecun_tanh, relu, silu, tanh"):
        get_activation("swish")
    with pytest.raises(ValueError, match="default, no_gate, pure"):
        fcfc.get_mode("gated")
    with pytest.raises(ValueError, match="valid activations"):
        CfCCell(3, 4, backbone_activation="softplus")
    with pytest.raises(ValueError, match="valid modes: default, no_gate, pure"):
        CfCCell(3, 4, mode="fast")
    with pytest.raises(ValueError, match="valid modes"):
        WiredCfCCell(3, ncps_wirings.AutoNCP(10, 2), mode="fast")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"input_size": 0, "hidden_size": 4}, "input_size must be >= 1"),
        ({"input_size": 3, "hidden_size": 0}, "hidden_size must be >= 1"),
        ({"input_size": 3, "hidden_size": 4, "backbone_layers": -1}, "backbone_layers"),
        ({"input_size": 3, "hidden_size": 4, "backbone_units": 0}, "backbone_units"),
        ({"input_size": 3, "hidden_size": 4, "backbone_dropout": 1.0}, "backbone_dropout"),
        ({"input_size": 3, "hidden_size": 4, "sparsity_mask": np.ones((4, 4))}, r"\[128, 4\]"),
    ],
)
def test_construction_is_validated(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CfCCell(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("grad", [True, False])
def test_packed_updates_equal_ncps_formulas(mode: str, grad: bool) -> None:
    g = torch.Generator().manual_seed(3)
    B, H = 6, 5
    dt = torch.rand(B, 1, generator=g, dtype=torch.float64) * 3
    heads = {
        n: torch.randn(B, H, generator=g, dtype=torch.float64) * 3 for n in fcfc.MODES[mode].heads
    }
    w_tau = torch.randn(1, H, generator=g, dtype=torch.float64)
    A = torch.randn(1, H, generator=g, dtype=torch.float64)
    if mode == "pure":
        want = fcfc.cfc_pure(heads["ff1"], w_tau, A, dt)
    else:
        kernel = fcfc.cfc_default if mode == "default" else fcfc.cfc_no_gate
        want = kernel(heads["ff1"], heads["ff2"], heads["time_a"], heads["time_b"], dt)
    spec = fcfc.MODES[mode]
    packed = torch.cat([heads[n] * s for n, s in zip(spec.heads, spec.head_scales, strict=True)], 1)
    packed.requires_grad_(grad)
    with torch.set_grad_enabled(grad):
        got = spec.update(packed, dt, w_tau, A)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-14)


def test_fold_linear_is_the_affine_composition() -> None:
    g = torch.Generator().manual_seed(0)
    w, b = torch.randn(4, 3, generator=g, dtype=torch.float64), torch.randn(4, dtype=torch.float64)
    s = torch.rand(5, 3, generator=g, dtype=torch.float64)
    fw, fb = fcfc.fold_linear(w, b, in_scale=3.0, in_shift=-1.5, out_scale=0.5)
    torch.testing.assert_close(s @ fw.T + fb, 0.5 * ((3.0 * s - 1.5) @ w.T + b))
    same_w, same_b = fcfc.fold_linear(w, b)
    assert same_w is w
    assert same_b is b


# --- CfCCell against ncps ----------------------------------------------------------------------


def test_same_seed_gives_ncps_initial_weights() -> None:
    for mode in MODES:
        torch.manual_seed(5)
        ref = NcpsCfCCell(F_IN, HIDDEN, mode, "lecun_tanh", UNITS, 2, 0.0)
        torch.manual_seed(5)
        ours = CfCCell(F_IN, HIDDEN, mode, "lecun_tanh", UNITS, 2, 0.0)
        sd = ours.state_dict()
        for k, v in ours.ncps_key_map("").items():
            if k in ("w_tau", "A"):  # ncps overwrites its own zeros/ones with Xavier noise
                continue
            torch.testing.assert_close(sd[v], ref.state_dict()[k], rtol=0, atol=0)
        if mode == "pure":
            assert ours.w_tau is not None
            assert ours.A is not None
            assert bool((ours.w_tau == 0).all())
            assert bool((ours.A == 1).all())


@pytest.mark.parametrize("dt_name", DT_PATTERNS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("layers", [0, 1, 2])
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("mode", MODES)
def test_cfc_cell_matches_ncps(
    mode: str, act: str, layers: int, dtype: torch.dtype, dt_name: str
) -> None:
    ref, ours = make_pair(mode, act, layers, dtype)
    B, T = 7, 4
    g = torch.Generator().manual_seed(1)
    x = torch.randn(B, T, F_IN, generator=g).to(dtype) * 2
    h0 = torch.randn(B, HIDDEN, generator=g).to(dtype)
    dt = dt_pattern(dt_name, B, T, dtype)
    with torch.no_grad():
        want, want_h = run_ncps_cell(ref, x, h0, dt)
    for mode_ctx in grad_modes():
        with mode_ctx():  # type: ignore[attr-defined]
            got, got_h = ours.forward_sequence(x, h0, dt)
        assert bool(torch.isfinite(got).all())
        torch.testing.assert_close(got.detach(), want, rtol=0, atol=ATOL[dtype])
        torch.testing.assert_close(got_h.detach(), want_h, rtol=0, atol=ATOL[dtype])


def test_per_sample_dt_with_batch_equal_to_units() -> None:
    """B == hidden_size: each stream's own Δt, never broadcast across units."""
    f64 = torch.float64
    ref, ours = make_pair(dtype=f64)
    B = HIDDEN
    g = torch.Generator().manual_seed(2)
    x = torch.randn(B, F_IN, generator=g, dtype=f64)
    h = torch.randn(B, HIDDEN, generator=g, dtype=f64)
    dt = 10 ** (torch.rand(B, 1, generator=g, dtype=f64) * 3 - 1)
    with torch.no_grad():
        batched, _ = ours(x, h, dt)
        alone = [ours(x[i : i + 1], h[i : i + 1], dt[i : i + 1])[0] for i in range(B)]
        want, _ = ref(x, h, dt)
        squeezed, _ = ref(x, h, dt.squeeze())  # what ncps's CfC wrapper passes
    torch.testing.assert_close(batched, torch.cat(alone), rtol=0, atol=1e-12)
    torch.testing.assert_close(batched, want, rtol=0, atol=1e-12)
    assert float((squeezed - want).abs().max()) > 1e-2  # the ncps bug: Δt indexed by unit


def test_ncps_wrapper_is_wrong_for_per_stream_timespans() -> None:
    """ncps.torch.CfC squeezes timespans [B, T] per step to [B]: with B == units it broadcasts
    them over units instead of streams. Ours (and ncps's cell fed [B, 1]) agree."""
    torch.manual_seed(4)
    wrapper = NcpsCfC(F_IN, HIDDEN, backbone_units=UNITS).eval()
    ours = CfCCell(F_IN, HIDDEN, backbone_units=UNITS).eval()
    key_map = ours.ncps_key_map()
    ours.load_state_dict({key_map[k]: v for k, v in wrapper.state_dict().items()})
    B, T = HIDDEN, 5
    g = torch.Generator().manual_seed(9)
    x = torch.randn(B, T, F_IN, generator=g)
    dt = dt_pattern("irregular", B, T, torch.float32)
    h0 = torch.zeros(B, HIDDEN)
    with torch.no_grad():
        buggy, _ = wrapper(x, h0, timespans=dt)
        right, _ = run_ncps_cell(wrapper.rnn_cell, x, h0, dt)
        got, _ = ours.forward_sequence(x, h0, dt)
        alone = torch.cat(
            [ours.forward_sequence(x[i : i + 1], h0[:1], dt[i : i + 1])[0] for i in range(B)]
        )
    torch.testing.assert_close(got, right, rtol=0, atol=1e-5)
    torch.testing.assert_close(got, alone, rtol=0, atol=1e-5)
    assert float((buggy - right).abs().max()) > 1e-2


def test_ncps_wrapper_agrees_with_shared_timespans() -> None:
    torch.manual_seed(6)
    wrapper = NcpsCfC(F_IN, HIDDEN, backbone_units=UNITS, backbone_layers=3, backbone_dropout=0.1)
    wrapper.eval()
    ours = CfCCell(F_IN, HIDDEN, backbone_units=UNITS, backbone_layers=3, backbone_dropout=0.1)
    key_map = ours.ncps_key_map()
    assert "rnn_cell.backbone.5.weight" in key_map  # Linear, act, Linear, act, Dropout, Linear
    ours.load_state_dict({key_map[k]: v for k, v in wrapper.state_dict().items()})
    ours.eval()
    x = torch.randn(3, 6, F_IN)
    with torch.no_grad():
        want, _ = wrapper(x)  # timespans None: Δt = 1 everywhere
        got, _ = ours.forward_sequence(x, ours.init_state(3), torch.ones(3, 6))
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


def _f64(values: list[float] | list[list[float]]) -> Tensor:
    return torch.tensor(values, dtype=torch.float64)


def test_closed_form_with_constant_heads() -> None:
    """Zero weights leave only the biases: the update is a scalar closed form per unit."""
    for mode in MODES:
        cell = CfCCell(2, 3, mode, backbone_layers=0).double()
        with torch.no_grad():
            for p in cell.parameters():
                p.zero_()
            cell.ff1.bias.copy_(_f64([0.3, -1.0, 2.0]))
            if mode != "pure":
                cell.ff2.bias.copy_(_f64([-0.5, 0.2, 1.0]))
                cell.time_a.bias.copy_(_f64([1.0, -2.0, 0.5]))
                cell.time_b.bias.copy_(_f64([0.0, 0.5, -1.0]))
            else:
                assert cell.w_tau is not None
                assert cell.A is not None
                cell.w_tau.copy_(_f64([[0.1, 0.0, -0.4]]))
                cell.A.copy_(_f64([[1.0, 2.0, -0.5]]))
        dt = torch.tensor([[0.0], [0.7], [30.0]], dtype=torch.float64)
        with torch.no_grad():
            got, _ = cell(
                torch.ones(3, 2, dtype=torch.float64), torch.ones(3, 3, dtype=torch.float64), dt
            )
        for i, d in enumerate(dt[:, 0].tolist()):
            f1 = np.array([0.3, -1.0, 2.0])
            if mode == "pure":
                w_tau, A = np.array([0.1, 0.0, -0.4]), np.array([1.0, 2.0, -0.5])
                want = A - A * np.exp(-d * (np.abs(w_tau) + np.abs(f1))) * f1
            else:
                gate = 1 / (1 + np.exp(-(np.array([1.0, -2.0, 0.5]) * d + [0.0, 0.5, -1.0])))
                t1, t2 = np.tanh(f1), np.tanh([-0.5, 0.2, 1.0])
                want = t1 * (1 - gate) + gate * t2 if mode == "default" else t1 + gate * t2
            np.testing.assert_allclose(got[i].numpy(), want, rtol=0, atol=1e-14)


@pytest.mark.parametrize("mode", MODES)
def test_extreme_dt_stays_finite_and_saturates(mode: str) -> None:
    _, ours = make_pair(mode, dtype=torch.float64)
    x, h = torch.randn(4, F_IN, dtype=torch.float64), torch.randn(4, HIDDEN, dtype=torch.float64)
    with torch.no_grad():
        zero, _ = ours(x, h, torch.zeros(4, 1, dtype=torch.float64))
        huge, _ = ours(x, h, torch.full((4, 1), 1e9, dtype=torch.float64))
        larger, _ = ours(x, h, torch.full((4, 1), 1e12, dtype=torch.float64))
    assert bool(torch.isfinite(zero).all())
    assert bool(torch.isfinite(huge).all())
    torch.testing.assert_close(huge, larger, rtol=0, atol=1e-12)  # the Δt -> ∞ limit


def test_inputs_are_not_mutated_and_paths_agree() -> None:
    _, ours = make_pair()
    x, h, dt = torch.randn(5, F_IN), torch.randn(5, HIDDEN), torch.rand(5, 1)
    copies = (x.clone(), h.clone(), dt.clone())
    outs = []
    for ctx in grad_modes():
        with ctx():  # type: ignore[attr-defined]
            out, h_new = ours(x, h, dt)
        assert out is h_new or torch.equal(out, h_new)
        outs.append(h_new.detach())
    for a, b in zip((x, h, dt), copies, strict=True):
        assert torch.equal(a, b)
    torch.testing.assert_close(outs[1], outs[0], rtol=0, atol=1e-6)
    torch.testing.assert_close(outs[2], outs[0], rtol=0, atol=1e-6)


def test_weight_cache_follows_every_kind_of_update() -> None:
    ref, ours = make_pair(act="tanh", layers=2)
    x, h, dt = torch.randn(3, F_IN), torch.randn(3, HIDDEN), torch.rand(3, 1)

    def check() -> None:
        with torch.no_grad():
            want, _ = run_ncps_cell(ref, x[:, None], h, dt)
        for ctx in (torch.no_grad, torch.inference_mode):
            with ctx():
                got, _ = ours(x, h, dt)
            torch.testing.assert_close(got, want[:, 0], rtol=0, atol=1e-5)

    check()
    opt = torch.optim.SGD(ours.parameters(), lr=0.5)  # an optimiser step
    ours(x, h, dt)[0].sum().backward()
    opt.step()
    ref.load_state_dict({k: ours.state_dict()[v] for k, v in ours.ncps_key_map("").items()})
    check()
    with torch.no_grad():  # an in-place edit
        ours.ff2.weight.mul_(-1.0)
        ref.ff2.weight.mul_(-1.0)
    check()
    new = {k: torch.randn_like(v) for k, v in ref.state_dict().items()}  # load_state_dict
    ref.load_state_dict(new)
    ours.load_state_dict({ours.ncps_key_map("")[k]: v for k, v in new.items()})
    check()
    second = ours.backbone[1]
    assert isinstance(second, nn.Linear)
    second.weight.data.mul_(2.0)  # .data bypasses version counters: clear_cache
    ref.backbone[2].weight.data.mul_(2.0)
    ours.clear_cache()
    check()
    ref.double()
    ours.double()  # .to(dtype)
    x, h, dt = x.double(), h.double(), dt.double()
    check()


def test_training_dropout_drops_after_every_layer() -> None:
    """ncps never applies dropout with one backbone layer; ours does, in training only."""
    torch.manual_seed(0)
    cell = CfCCell(F_IN, HIDDEN, backbone_units=64, backbone_layers=1, backbone_dropout=0.5)
    x, h, dt = torch.randn(16, F_IN), torch.randn(16, HIDDEN), torch.rand(16, 1)
    cell.eval()
    with torch.no_grad():
        ev1, _ = cell(x, h, dt)
    cell.train()
    tr, _ = cell(x, h, dt)
    assert float((tr.detach() - ev1).abs().max()) > 1e-3
    tr.sum().backward()
    assert cell.backbone[0].weight.grad is not None
    cell.eval()
    ev2, _ = cell(x, h, dt)
    torch.testing.assert_close(ev2, ev1, rtol=0, atol=1e-6)


def test_forward_sequence_with_mask_equals_stepping() -> None:
    _, ours = make_pair()
    B, T = 4, 6
    x = torch.randn(B, T, F_IN)
    dt = dt_pattern("irregular", B, T, torch.float32)
    mask = torch.rand(B, T) > 0.3
    h = h0 = torch.randn(B, HIDDEN)
    with torch.no_grad():
        got, got_h = ours.forward_sequence(x, h0, dt, mask)
        for t in range(T):
            out, h_new = ours(x[:, t], h, dt[:, t : t + 1])
            keep = mask[:, t : t + 1]
            torch.testing.assert_close(got[:, t], torch.where(keep, out, h), rtol=0, atol=0)
            h = torch.where(keep, h_new, h)
    torch.testing.assert_close(got_h, h, rtol=0, atol=0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"mode": "default"},
        {"mode": "no_gate", "backbone_activation": "silu", "backbone_layers": 2},
        {"mode": "pure", "backbone_layers": 0},
        {"backbone_layers": 0, "sparsity_mask": (np.arange(36).reshape(9, 4) % 3 == 0)},
    ],
)
def test_config_round_trip_through_json(kwargs: dict[str, object]) -> None:
    cell = CfCCell(5, 4, backbone_units=6, **kwargs).eval()  # type: ignore[arg-type]
    config = json.loads(json.dumps(cell.get_config()))
    assert config["type"] == "cfc"
    rebuilt = CfCCell.from_config(config).eval()
    rebuilt.load_state_dict(cell.state_dict())
    x, h, dt = torch.randn(3, 5), torch.randn(3, 4), torch.rand(3, 1)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x, h, dt)[0], cell(x, h, dt)[0], rtol=0, atol=0)
    assert rebuilt.get_config() == config
    with pytest.raises(ValueError, match="of type 'cfc'"):
        CfCCell.from_config({**config, "type": "ltc"})


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("act", "layers"), [("lecun_tanh", 2), ("relu", 1), ("tanh", 0)])
def test_gradcheck_float64(mode: str, act: str, layers: int) -> None:
    torch.manual_seed(0)
    cell = CfCCell(3, 4, mode, act, 5, layers).double()
    names = [n for n, _ in cell.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_() for p in cell.parameters())
    x = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    h = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    dt = (torch.rand(2, 1, dtype=torch.float64) + 0.1).requires_grad_()

    def f(x: Tensor, h: Tensor, dt: Tensor, *ps: Tensor) -> Tensor:
        out, _ = torch.func.functional_call(cell, dict(zip(names, ps, strict=True)), (x, h, dt))
        return out

    assert torch.autograd.gradcheck(f, (x, h, dt, *params))


# --- WiredCfCCell against ncps -----------------------------------------------------------------


def ncps_wiring(kind: str) -> ncps_wirings.Wiring:
    if kind == "autoncp":
        return ncps_wirings.AutoNCP(16, 4, sparsity_level=0.5, seed=1234)
    if kind == "ncp":
        return ncps_wirings.NCP(6, 5, 3, 4, 3, 4, 2, seed=22)
    if kind == "fully_connected":
        return ncps_wirings.FullyConnected(8, output_dim=3)
    raise AssertionError(kind)


def make_wired_pair(kind: str, mode: str, seed: int = 0) -> tuple[NcpsWiredCfCCell, WiredCfCCell]:
    wiring = ncps_wiring(kind)
    torch.manual_seed(seed)
    ref = NcpsWiredCfCCell(F_IN, wiring, mode)
    ours = WiredCfCCell(None, wiring, mode)  # built by ncps: building an NCP twice adds synapses
    key_map = ours.ncps_key_map(prefix="")
    assert set(key_map) == set(ref.state_dict())
    ours.load_state_dict({key_map[k]: v for k, v in ref.state_dict().items()})
    return ref.eval(), ours.eval()


@pytest.mark.parametrize("dt_name", DT_PATTERNS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", ["autoncp", "ncp", "fully_connected"])
def test_wired_cfc_matches_ncps(kind: str, mode: str, dt_name: str) -> None:
    ref, ours = make_wired_pair(kind, mode)
    assert ours.layer_sizes == ref.layer_sizes
    assert ours.state_size == ref.state_size
    B, T = 6, 4
    g = torch.Generator().manual_seed(3)
    x = torch.randn(B, T, F_IN, generator=g)
    h0 = torch.randn(B, ours.state_size, generator=g) * 0.5
    dt = dt_pattern(dt_name, B, T, torch.float32)
    with torch.no_grad():
        _, want_h = run_ncps_cell(ref, x, h0, dt)
        h = h0
        states = []
        for t in range(T):
            _, h = ref(x[:, t], h, dt[:, t : t + 1])
            states.append(h)
    for ctx in grad_modes():
        with ctx():  # type: ignore[attr-defined]
            got, got_h = ours.forward_sequence(x, h0, dt)
        torch.testing.assert_close(got_h.detach(), want_h, rtol=0, atol=1e-5)
        motor = ours.output_of(torch.stack(states, 1).flatten(0, 1)).unflatten(0, (B, T))
        torch.testing.assert_close(got.detach(), motor, rtol=0, atol=1e-5)
    assert ours.output_size == ref.output_size  # ncps's declared output size
    if kind != "fully_connected":  # NCP: the motor neurons are the whole last layer, as ncps
        assert ours.output_size == ref.layer_sizes[-1]


def test_wired_masks_are_ncps_masks_and_hold_under_training() -> None:
    ref, ours = make_wired_pair("autoncp", "default")
    for i, layer in enumerate(ours.layers):
        ref_layer = getattr(ref, f"layer_{i}")
        torch.testing.assert_close(layer.sparsity_mask, ref_layer.sparsity_mask, rtol=0, atol=0)
    x, h, dt = torch.randn(3, F_IN), torch.randn(3, ours.state_size), torch.rand(3, 1)
    ours(x, h, dt)[0].sum().backward()
    for layer in ours.layers:  # masked-out synapses get no gradient
        assert layer.sparsity_mask is not None
        assert layer.ff1.weight.grad is not None
        assert bool((layer.ff1.weight.grad[layer.sparsity_mask == 0] == 0).all())


def test_wired_per_sample_dt_with_batch_equal_to_units() -> None:
    _, ours = make_wired_pair("autoncp", "default")
    B = ours.state_size
    x, h = torch.randn(B, F_IN), torch.randn(B, B)
    dt = 10 ** (torch.rand(B, 1) * 3 - 1)
    with torch.no_grad():
        batched, hb = ours(x, h, dt)
        alone = [ours(x[i : i + 1], h[i : i + 1], dt[i : i + 1]) for i in range(B)]
    torch.testing.assert_close(batched, torch.cat([a[0] for a in alone]), rtol=0, atol=1e-5)
    torch.testing.assert_close(hb, torch.cat([a[1] for a in alone]), rtol=0, atol=1e-5)


def test_wired_gradcheck_float64() -> None:
    torch.manual_seed(0)
    ours = WiredCfCCell(2, ncps_wirings.NCP(3, 2, 2, 2, 2, 1, 1, seed=1)).double()
    x = torch.randn(2, 2, dtype=torch.float64, requires_grad=True)
    h = torch.randn(2, ours.state_size, dtype=torch.float64, requires_grad=True)
    dt = (torch.rand(2, 1, dtype=torch.float64) + 0.1).requires_grad_()
    assert torch.autograd.gradcheck(lambda x, h, dt: ours(x, h, dt)[1], (x, h, dt))


def test_wired_config_round_trip_through_json() -> None:
    from liquidcore.wirings import AutoNCP

    cell = WiredCfCCell(F_IN, AutoNCP(14, 3, seed=7), mode="no_gate").eval()
    config = json.loads(json.dumps(cell.get_config()))
    assert config["type"] == "wired_cfc"
    assert config["wiring"]["type"] == "auto_ncp"
    rebuilt = WiredCfCCell.from_config(config).eval()
    rebuilt.load_state_dict(cell.state_dict())  # the masks are buffers: they must agree too
    x, h, dt = torch.randn(3, F_IN), torch.randn(3, 14), torch.rand(3, 1)
    with torch.no_grad():
        for a, b in zip(rebuilt(x, h, dt), cell(x, h, dt), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_wired_cell_accepts_our_wiring_like_ncps_wiring() -> None:
    from liquidcore.wirings import AutoNCP

    theirs = NcpsWiredCfCCell(F_IN, ncps_wirings.AutoNCP(14, 3, seed=7))
    ours = WiredCfCCell(F_IN, AutoNCP(14, 3, seed=7))
    for i, layer in enumerate(ours.layers):
        ref_mask = getattr(theirs, f"layer_{i}").sparsity_mask
        torch.testing.assert_close(layer.sparsity_mask, ref_mask, rtol=0, atol=0)


def test_wired_does_not_rebuild_a_built_wiring() -> None:
    wiring = ncps_wirings.AutoNCP(12, 3, seed=2)
    wiring.build(F_IN)
    before = (wiring.adjacency_matrix.copy(), wiring.sensory_adjacency_matrix.copy())
    WiredCfCCell(F_IN, wiring)  # ncps's NCP.build would add a second round of synapses
    np.testing.assert_array_equal(wiring.adjacency_matrix, before[0])
    np.testing.assert_array_equal(wiring.sensory_adjacency_matrix, before[1])
    with pytest.raises(ValueError, match=r"[Cc]onflicting input dimensions"):
        WiredCfCCell(F_IN + 1, wiring)


def test_wired_needs_a_built_wiring() -> None:
    with pytest.raises(ValueError, match="pass input_size"):
        WiredCfCCell(None, ncps_wirings.AutoNCP(10, 2))


@pytest.mark.parametrize(
    ("mode", "layers", "activation", "dropout"),
    [
        ("default", 1, "lecun_tanh", 0.0),
        ("no_gate", 2, "silu", 0.3),
        ("pure", 0, "tanh", 0.0),
        ("default", 2, "tanh", 0.2),
    ],
)
def test_training_sequence_equals_stepping_with_gradients(
    mode: str, layers: int, activation: str, dropout: float
) -> None:
    """With autograd the sequence path splits the first product and prepares the weights once;
    outputs, final state and every parameter gradient equal a loop over ``forward`` (dropout
    draws the same masks in the same order)."""
    torch.manual_seed(0)
    cell = (
        CfCCell(
            F_IN,
            HIDDEN,
            mode=mode,
            backbone_layers=layers,
            backbone_units=10,
            backbone_activation=activation,
            backbone_dropout=dropout,
        )
        .double()
        .train()
    )  # float64: the two summation orders agree to ~1e-15
    B, T = 3, 7
    x = torch.randn(B, T, F_IN, dtype=torch.float64)
    dt = dt_pattern("irregular", B, T, torch.float64)
    mask = torch.rand(B, T) > 0.3
    h0 = torch.randn(B, HIDDEN, dtype=torch.float64)

    def grads(seq: bool) -> tuple[Tensor, Tensor, list[Tensor]]:
        cell.zero_grad()
        torch.manual_seed(1)
        if seq:
            out, h = cell.forward_sequence(x, h0, dt, mask)
        else:
            h, outs = h0, []
            for t in range(T):
                _, h_new = cell(x[:, t], h, dt[:, t : t + 1])
                h = torch.where(mask[:, t : t + 1], h_new, h)
                outs.append(h)
            out = torch.stack(outs, 1)
        (out.square().sum() + h.sum()).backward()
        grads = [p.grad.clone() for p in cell.parameters() if p.grad is not None]
        return out.detach(), h.detach(), grads

    out_s, h_s, g_s = grads(True)
    out_l, h_l, g_l = grads(False)
    torch.testing.assert_close(out_s, out_l, rtol=0, atol=1e-12)
    torch.testing.assert_close(h_s, h_l, rtol=0, atol=1e-12)
    assert len(g_s) == len(g_l) > 0
    for a, b in zip(g_s, g_l, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


# --- head activation (the CfC paper's TensorFlow cell) ------------------------------------------


@pytest.mark.parametrize("mode", ["default", "no_gate"])
@pytest.mark.parametrize("grad", [True, False])
def test_lecun_tanh_heads_equal_the_paper_formula(mode: str, grad: bool) -> None:
    """``head_activation="lecun_tanh"``: ff1/ff2 pass through ``1.7159·tanh(0.666·u)`` as in
    the paper's ``tf_cfc.CfcCell`` (ncps uses tanh); the packed fast path equals the formula."""
    torch.manual_seed(4)
    cell = CfCCell(F_IN, HIDDEN, mode, "relu", 10, 1, head_activation="lecun_tanh").double()
    x = torch.randn(3, F_IN, dtype=torch.float64)
    h = torch.randn(3, HIDDEN, dtype=torch.float64)
    dt = torch.rand(3, 1, dtype=torch.float64) * 2
    u = torch.relu(cell.backbone[0](torch.cat([x, h], 1)))
    kernel = fcfc.cfc_default if mode == "default" else fcfc.cfc_no_gate
    with torch.no_grad():
        want = kernel(cell.ff1(u), cell.ff2(u), cell.time_a(u), cell.time_b(u), dt, lecun_tanh)
    with torch.set_grad_enabled(grad):
        got, _ = cell(x, h, dt)
    torch.testing.assert_close(got.detach(), want, rtol=0, atol=1e-13)
    with torch.no_grad():
        tanh_heads = kernel(cell.ff1(u), cell.ff2(u), cell.time_a(u), cell.time_b(u), dt)
    assert not torch.allclose(want, tanh_heads)  # the head activation is not ncps's tanh
    rebuilt = CfCCell.from_config(json.loads(json.dumps(cell.get_config())))
    assert rebuilt.head_activation == "lecun_tanh"


def test_head_activation_is_validated() -> None:
    with pytest.raises(ValueError, match="head_activation must be one of tanh, lecun_tanh"):
        CfCCell(3, 4, head_activation="relu")
    with pytest.raises(ValueError, match="pure mode has no ff1/ff2 activation"):
        CfCCell(3, 4, mode="pure", head_activation="lecun_tanh")


# --- fused step (packed heads, split first product) against the unfused formulas -----------------

# Fused and unfused float32 steps differ by the order of a few sums (a split product, packed and
# folded weights): their outputs, of order 1, agree to this many ulps-of-1 worth of round-off.
FUSED_ATOL = 2e-6


def unfused_step(cell: CfCCell, x: Tensor, h: Tensor, dt: Tensor) -> Tensor:
    """ncps's step written out: ``[x, h]`` concatenated, every head its own product."""
    u = torch.cat([x, h], dim=1)
    act = get_activation(cell.backbone_activation)
    for layer in cell.backbone:
        u = act(layer(u))

    def head(name: str) -> Tensor:
        linear = getattr(cell, name)
        w = linear.weight
        if cell.sparsity_mask is not None and name in ("ff1", "ff2"):
            w = w * cell.sparsity_mask
        return nn.functional.linear(u, w, linear.bias)

    if cell.mode == "pure":
        assert cell.w_tau is not None
        assert cell.A is not None
        return fcfc.cfc_pure(head("ff1"), cell.w_tau, cell.A, dt)
    update = fcfc.cfc_default if cell.mode == "default" else fcfc.cfc_no_gate
    heads = (head("ff1"), head("ff2"), head("time_a"), head("time_b"))
    return update(*heads, dt, act=get_activation(cell.head_activation))


def fused_cases() -> list[tuple[str, int, str]]:
    return [
        (mode, layers, head)
        for mode in MODES
        for layers in (0, 1, 2)
        for head in ("tanh", "lecun_tanh")
        if mode != "pure" or head == "tanh"
    ]


@pytest.mark.parametrize(("mode", "layers", "head"), fused_cases())
@pytest.mark.parametrize("mixed", [False, True])
def test_fused_step_equals_unfused_formulas(mode: str, layers: int, head: str, mixed: bool) -> None:
    torch.manual_seed(3)
    cell = CfCCell(F_IN, HIDDEN, mode, "lecun_tanh", UNITS, layers, head_activation=head)
    if cell.w_tau is not None and cell.A is not None:
        with torch.no_grad():  # away from ncps's w_tau = 0, A = 1
            cell.w_tau.normal_()
            cell.A.normal_()
    model: nn.Module = MixedMemoryCell(cell) if mixed else cell
    state = 2 * HIDDEN if mixed else HIDDEN
    x, h, dt = torch.randn(6, F_IN), torch.randn(6, state), torch.rand(6, 1) * 3
    h_in = h
    if mixed:
        assert isinstance(model, MixedMemoryCell)
        h_in, _ = model.lstm(x, h[:, :HIDDEN], h[:, HIDDEN:])
    with torch.no_grad():
        want = unfused_step(cell, x, h_in.detach(), dt)
    for ctx in grad_modes():
        with ctx():  # type: ignore[attr-defined]
            got = model(x, h, dt)[1][:, :HIDDEN]
        torch.testing.assert_close(got.detach(), want, rtol=0, atol=FUSED_ATOL)


@pytest.mark.parametrize("layers", [0, 1, 2])
def test_fused_training_gradients_equal_unfused(layers: int) -> None:
    """The split first product and packed heads on the autograd path: same gradients as the
    unfused formulas, for every parameter."""
    torch.manual_seed(4)
    cell = CfCCell(F_IN, HIDDEN, "default", "lecun_tanh", UNITS, layers).double()
    x = torch.randn(4, 3, F_IN, dtype=torch.float64)
    dt = torch.rand(4, 3, dtype=torch.float64)
    h0 = torch.randn(4, HIDDEN, dtype=torch.float64)
    grads = []
    for fused in (True, False):
        cell.zero_grad()
        if fused:
            out, _ = cell.forward_sequence(x, h0, dt)
        else:
            h, steps = h0, []
            for t in range(3):
                h = unfused_step(cell, x[:, t], h, dt[:, t : t + 1])
                steps.append(h)
            out = torch.stack(steps, 1)
        out.square().sum().backward()
        grads.append({n: p.grad.clone() for n, p in cell.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    assert grads[0]
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("layers", [0, 1, 2])
def test_inference_sequence_is_bitwise_stepping(layers: int) -> None:
    """Without autograd a sequence (a served backfill) runs each step's exact operations."""
    torch.manual_seed(5)
    cell = CfCCell(F_IN, HIDDEN, "default", "lecun_tanh", UNITS, layers)
    x, dt = torch.randn(7, 9, F_IN), torch.rand(7, 9)
    h = torch.randn(7, HIDDEN)
    with torch.inference_mode():
        out, h_seq = cell.forward_sequence(x, h, dt)
        for t in range(9):
            h = cell.step(x[:, t].contiguous(), h, dt[:, t : t + 1])
            assert torch.equal(out[:, t], h)
    assert torch.equal(h_seq, h)


# --- training: the gated sequence as one autograd node (liquidcore.functional.cfc_sequence) -----


def one_node_cases() -> list[tuple[str, int, str, bool]]:
    return [
        (mode, layers, head, masked)
        for mode in ("default", "no_gate")
        for layers in (0, 1, 2)
        for head in ("tanh", "lecun_tanh")
        for masked in (False, True)
    ]


@pytest.mark.parametrize(("mode", "layers", "head", "masked"), one_node_cases())
def test_one_node_sequence_equals_stepping_in_autograd(
    mode: str, layers: int, head: str, masked: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Training runs the gated sequence as one node (weight gradients as products over many
    steps at once); its outputs and the gradients of every parameter, the inputs, the initial
    state and Δt equal plain autograd over the steps, in float64 to 1e-9 relative."""
    import liquidcore.cells.cfc as cfc_module

    calls = []
    node = cfc_module.cfc_gated_sequence

    def counted(*args: object, **kwargs: object) -> Tensor:
        calls.append(1)
        return node(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(cfc_module, "cfc_gated_sequence", counted)
    torch.manual_seed(6)
    cell = CfCCell(F_IN, HIDDEN, mode, "lecun_tanh", 10, layers, head_activation=head).double()
    B, T = 3, 19  # 19 > CHUNK: the weight gradients are summed over two chunks
    x = torch.randn(B, T, F_IN, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(B, HIDDEN, dtype=torch.float64, requires_grad=True)
    dt = dt_pattern("irregular", B, T, torch.float64).requires_grad_()
    mask = torch.rand(B, T) > 0.3 if masked else None
    weight = torch.randn(B, T, HIDDEN, dtype=torch.float64)

    def run(one_node: bool) -> tuple[Tensor, list[Tensor]]:
        cell.zero_grad()
        for t in (x, h0, dt):
            t.grad = None
        if one_node:
            out, h = cell.forward_sequence(x, h0, dt, mask)
        else:
            out, h = LiquidCell.forward_sequence(cell, x, h0, dt, mask)  # step by step
        ((out * weight).sum() + h.square().sum()).backward()
        grads = [x.grad, h0.grad, dt.grad, *(p.grad for p in cell.parameters())]
        assert all(g is not None for g in grads)
        return out.detach(), [g for g in grads if g is not None]

    out_node, g_node = run(True)
    assert calls == [1]
    out_steps, g_steps = run(False)
    torch.testing.assert_close(out_node, out_steps, rtol=0, atol=1e-14)
    for a, b in zip(g_node, g_steps, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12 * (1 + float(b.abs().max())))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"mode": "pure"},
        {"backbone_dropout": 0.2},
        {"backbone_activation": "silu"},
    ],
)
def test_one_node_only_where_it_applies(kwargs: dict[str, object]) -> None:
    cell = CfCCell(F_IN, HIDDEN, **kwargs).train()  # type: ignore[arg-type]
    assert not cell._one_node(cell._dropping_out())
    assert CfCCell(F_IN, HIDDEN).train()._one_node(False)
