"""Mixed memory (an LSTM ahead of a liquid cell): values against ncps's ``mixed_memory=True``."""

from __future__ import annotations

import json

import pytest
import torch
from ncps import wirings as ncps_wirings
from ncps.torch import CfC as NcpsCfC
from torch import Tensor

from liquidcore.cells.cfc import CfCCell, WiredCfCCell
from liquidcore.cells.mixed import MixedMemoryCell, lstm_update

F_IN, UNITS = 5, 8


def ncps_mixed_reference(
    wrapper: NcpsCfC, x: Tensor, h: Tensor, c: Tensor, dt: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """ncps's wrapper loop (LSTM, then the cell) with Δt ``[B, 1]`` per step, which the wrapper
    itself cannot pass (it squeezes timespans)."""
    outs = []
    for t in range(x.shape[1]):
        h, c = wrapper.lstm(x[:, t], (h, c))
        out, h = wrapper.rnn_cell(x[:, t], h, dt[:, t : t + 1])
        outs.append(out)
    return torch.stack(outs, 1), h, c


def make_pair(
    inner: str = "cfc", mode: str = "default", dtype: torch.dtype = torch.float32
) -> tuple[NcpsCfC, MixedMemoryCell]:
    """An ncps CfC with mixed memory and ours from the same seed (no copying: the same draws)."""
    wiring = ncps_wirings.AutoNCP(12, 3, seed=5)
    torch.manual_seed(0)
    if inner == "cfc":
        ref = NcpsCfC(F_IN, UNITS, mixed_memory=True, mode=mode, backbone_units=10)
    else:
        ref = NcpsCfC(F_IN, wiring, mixed_memory=True, mode=mode)
    torch.manual_seed(0)
    cell = (
        CfCCell(F_IN, UNITS, mode, backbone_units=10)
        if inner == "cfc"
        else WiredCfCCell(None, wiring, mode)  # ncps built it: building twice adds synapses
    )
    ours = MixedMemoryCell(cell)
    sd = ours.state_dict()
    for k, v in ours.ncps_key_map().items():
        if not k.endswith(("w_tau", ".A")):  # ncps draws Xavier noise over its zeros/ones
            torch.testing.assert_close(sd[v], ref.state_dict()[k], rtol=0, atol=0)
    ours.load_state_dict({ours.ncps_key_map()[k]: v for k, v in ref.state_dict().items()})
    return ref.to(dtype).eval(), ours.to(dtype).eval()


def test_lstm_update_is_ncps_lstm() -> None:
    torch.manual_seed(1)
    ref = NcpsCfC(F_IN, UNITS, mixed_memory=True).lstm.double()
    x = torch.randn(4, F_IN, dtype=torch.float64)
    h, c = torch.randn(4, UNITS, dtype=torch.float64), torch.randn(4, UNITS, dtype=torch.float64)
    z = ref.input_map(x) + ref.recurrent_map(h)
    for got, want in zip(lstm_update(z, c), ref(x, (h, c)), strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-14)


@pytest.mark.parametrize("dt_name", ["regular", "irregular", "zero", "huge"])
@pytest.mark.parametrize("mode", ["default", "no_gate", "pure"])
@pytest.mark.parametrize("inner", ["cfc", "wired_cfc"])
def test_mixed_matches_ncps_over_a_sequence(inner: str, mode: str, dt_name: str) -> None:
    ref, ours = make_pair(inner, mode)
    n = ours.inner.state_size
    B, T = 6, 5
    g = torch.Generator().manual_seed(2)
    x = torch.randn(B, T, F_IN, generator=g)
    h0 = torch.randn(B, n, generator=g) * 0.5
    c0 = torch.randn(B, n, generator=g) * 0.5
    dt = {
        "regular": torch.full((B, T), 0.5),
        "irregular": 10 ** (torch.rand(B, T, generator=g) * 4 - 2),
        "zero": torch.zeros(B, T),
        "huge": torch.full((B, T), 1e9),
    }[dt_name]
    with torch.no_grad():
        want, want_h, want_c = ncps_mixed_reference(ref, x, h0, c0, dt)
    for ctx in (torch.enable_grad, torch.no_grad, torch.inference_mode):
        with ctx():
            got, state = ours.forward_sequence(x, torch.cat([h0, c0], 1), dt)
        assert bool(torch.isfinite(got).all())
        # (ncps's wired cell outputs its last layer: for an NCP, the motor neurons, as ours)
        torch.testing.assert_close(got.detach(), want, rtol=0, atol=1e-5)
        torch.testing.assert_close(state[:, :n].detach(), want_h, rtol=0, atol=1e-5)
        torch.testing.assert_close(state[:, n:].detach(), want_c, rtol=0, atol=1e-5)
        torch.testing.assert_close(ours.output_of(state).detach(), want[:, -1], rtol=0, atol=1e-5)


def test_ncps_wrapper_agrees_with_shared_timespans() -> None:
    """With one Δt for every stream (timespans None: 1.0) ncps's own wrapper is right."""
    ref, ours = make_pair()
    x = torch.randn(3, 7, F_IN)
    with torch.no_grad():
        want, (want_h, want_c) = ref(x)
        got, state = ours.forward_sequence(x, ours.init_state(3), torch.ones(3, 7))
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    torch.testing.assert_close(state, torch.cat([want_h, want_c], 1), rtol=0, atol=1e-5)


def test_per_sample_dt_with_batch_equal_to_units() -> None:
    f64 = torch.float64
    ref, ours = make_pair(dtype=f64)
    B = UNITS  # where ncps's squeezed timespans broadcast over units without an error
    g = torch.Generator().manual_seed(3)
    x = torch.randn(B, 4, F_IN, generator=g, dtype=f64)
    dt = 10 ** (torch.rand(B, 4, generator=g, dtype=f64) * 3 - 1)
    zeros = torch.zeros(B, UNITS, dtype=f64)
    with torch.no_grad():
        got, _ = ours.forward_sequence(x, ours.init_state(B), dt)
        want, _, _ = ncps_mixed_reference(ref, x, zeros, zeros, dt)
        alone = [
            ours.forward_sequence(x[i : i + 1], ours.init_state(1), dt[i : i + 1])[0]
            for i in range(B)
        ]
        buggy, _ = ref(x, (zeros, zeros), timespans=dt)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    torch.testing.assert_close(got, torch.cat(alone), rtol=0, atol=1e-12)
    assert float((buggy - want).abs().max()) > 1e-2  # ncps issues 81-83


def test_state_is_h_then_c_and_inputs_are_not_mutated() -> None:
    _, ours = make_pair()
    assert ours.state_size == 2 * UNITS
    assert ours.output_size == UNITS
    x, h, dt = torch.randn(2, F_IN), torch.randn(2, 2 * UNITS), torch.rand(2, 1)
    h_copy = h.clone()
    with torch.no_grad():
        out, state = ours(x, h, dt)
        h_lstm, c_new = ours.lstm(x, h[:, :UNITS], h[:, UNITS:])
        want_out, want_h = ours.inner(x, h_lstm, dt)
    assert torch.equal(h, h_copy)
    torch.testing.assert_close(state, torch.cat([want_h, c_new], 1), rtol=0, atol=0)
    torch.testing.assert_close(out, want_out, rtol=0, atol=0)


def test_gradcheck_float64() -> None:
    torch.manual_seed(0)
    cell = MixedMemoryCell(CfCCell(3, 4, backbone_units=5)).double()
    names = [n for n, _ in cell.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_() for p in cell.parameters())
    x = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    h = torch.randn(2, 8, dtype=torch.float64, requires_grad=True)
    dt = (torch.rand(2, 1, dtype=torch.float64) + 0.1).requires_grad_()

    def f(x: Tensor, h: Tensor, dt: Tensor, *ps: Tensor) -> Tensor:
        _, state = torch.func.functional_call(cell, dict(zip(names, ps, strict=True)), (x, h, dt))
        return state

    assert torch.autograd.gradcheck(f, (x, h, dt, *params))


@pytest.mark.parametrize("inner", ["cfc", "wired_cfc"])
def test_config_round_trip_through_json(inner: str) -> None:
    from liquidcore.cells.registry import build_cell
    from liquidcore.wirings import AutoNCP

    cell = MixedMemoryCell(
        CfCCell(F_IN, 6, mode="no_gate", backbone_units=7)
        if inner == "cfc"
        else WiredCfCCell(F_IN, AutoNCP(10, 2, seed=3))
    ).eval()
    config = json.loads(json.dumps(cell.get_config()))
    assert config["type"] == "mixed_memory"
    assert config["inner"]["type"] == inner
    rebuilt = build_cell(config).eval()
    rebuilt.load_state_dict(cell.state_dict())
    x, h, dt = torch.randn(3, F_IN), torch.randn(3, cell.state_size), torch.rand(3, 1)
    with torch.no_grad():
        for a, b in zip(rebuilt(x, h, dt), cell(x, h, dt), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_errors() -> None:
    with pytest.raises(ValueError, match="must be a LiquidCell"):
        MixedMemoryCell(torch.nn.Linear(2, 2))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="of type 'mixed_memory'"):
        MixedMemoryCell.from_config({"type": "cfc"})
