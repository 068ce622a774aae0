"""Importing ncps models: same weights, same outputs and final state (float32 round-off), and
right where ncps is wrong (per-sample Δt)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from ncps.torch import LTC, CfC, CfCCell, LTCCell
from ncps.wirings import NCP, AutoNCP, FullyConnected

from liquidcore.cells.mixed import MixedMemoryCell
from liquidcore.compat.ncps import from_ncps, load_ncps_state_dict
from liquidcore.wirings import AutoNCP as OurAutoNCP

TOL = 1e-5
INPUTS = 6


def _randomize(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Random weights everywhere (not ncps's structured init: biases, LTC mappings and reversal
    potentials all move), each on the scale of its own initialisation, LTC's positive ranges
    kept, so that a wrong key mapping cannot hide behind a constant init value."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if not p.requires_grad:
                continue
            noise = torch.rand(p.shape, generator=g)
            if name.split(".")[-1] in ("gleak", "cm", "w", "sensory_w", "sigma", "sensory_sigma"):
                p.copy_(p.abs() * (0.5 + noise))
            else:
                scale = float(p.std()) if p.numel() > 1 and float(p.std()) > 0 else 0.1
                p.add_((noise - 0.5) * scale)
    return module.eval()


BUILDERS: dict[str, Callable[[], torch.nn.Module]] = {
    "cfc_default": lambda: CfC(INPUTS, 12),
    "cfc_no_gate_silu": lambda: CfC(INPUTS, 12, mode="no_gate", activation="silu"),
    "cfc_pure_gelu": lambda: CfC(INPUTS, 12, mode="pure", activation="gelu"),
    "cfc_relu_2layers_dropout": lambda: CfC(
        INPUTS, 10, activation="relu", backbone_units=24, backbone_layers=2, backbone_dropout=0.2
    ),
    "cfc_tanh_no_backbone": lambda: CfC(INPUTS, 10, activation="tanh", backbone_layers=0),
    "cfc_proj": lambda: CfC(INPUTS, 12, proj_size=3),
    "cfc_mixed": lambda: CfC(INPUTS, 12, mixed_memory=True),
    "cfc_mixed_proj": lambda: CfC(INPUTS, 12, mixed_memory=True, proj_size=2),
    "wired_cfc_autoncp": lambda: CfC(INPUTS, AutoNCP(16, 3, seed=3)),
    "wired_cfc_ncp_no_gate": lambda: CfC(INPUTS, NCP(6, 5, 2, 3, 3, 4, 2, seed=1), mode="no_gate"),
    "wired_cfc_pure_mixed_proj": lambda: CfC(
        INPUTS, AutoNCP(14, 2, seed=9), mode="pure", mixed_memory=True, proj_size=4
    ),
    "ltc_autoncp": lambda: LTC(INPUTS, AutoNCP(16, 3, seed=4)),
    "ltc_fc_explicit": lambda: LTC(INPUTS, 8, implicit_param_constraints=False),
    "ltc_linear_none": lambda: LTC(
        INPUTS, AutoNCP(12, 2, seed=2), input_mapping="linear", output_mapping=None
    ),
    "ltc_ncp_unfolds3": lambda: LTC(INPUTS, NCP(5, 4, 2, 3, 2, 3, 2, seed=8), ode_unfolds=3),
    "ltc_mixed": lambda: LTC(INPUTS, AutoNCP(12, 2, seed=5), mixed_memory=True),
}


def _state(h: Any) -> torch.Tensor:
    return torch.cat(h, dim=1) if isinstance(h, tuple) else h


WIRING_SEEDS = {"wired_cfc_ncp_no_gate": 1, "ltc_ncp_unfolds3": 8}  # ncps's NCP forgets its seed


def _pair(kind: str, seed: int = 0) -> tuple[torch.nn.Module, Any]:
    torch.manual_seed(seed)
    ref = _randomize(BUILDERS[kind](), seed)
    return ref, from_ncps(ref, wiring_seed=WIRING_SEEDS.get(kind))


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_regular_sequences_match_the_ncps_module(kind: str) -> None:
    ref, ours = _pair(kind)
    x = torch.randn(4, 9, INPUTS)
    with torch.no_grad():
        y_ref, h_ref = ref(x)
        y, h = ours(x)
    assert (y - y_ref).abs().max() <= TOL
    assert (h - _state(h_ref)).abs().max() <= TOL


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_float32_error_is_ncps_own_round_off(kind: str) -> None:
    """Against the float64 truth, our float32 result is as close as ncps's float32 one."""
    ref, ours = _pair(kind, seed=5)
    x = torch.randn(4, 12, INPUTS)
    with torch.no_grad():
        y_ref32, _ = ref(x)
        y32, _ = ours(x)
        zeros = torch.zeros(4, ref.state_size, dtype=torch.float64)  # type: ignore[arg-type]
        h0 = (zeros, zeros) if getattr(ref, "use_mixed", False) else zeros  # ncps makes float32
        y_true, _ = copy.deepcopy(ref).double()(x.double(), h0)
    ncps_error = float((y_ref32.double() - y_true).abs().max())
    our_error = float((y32.double() - y_true).abs().max())
    assert our_error <= 2.0 * ncps_error + 1e-6


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_irregular_single_stream_matches_the_ncps_module(kind: str) -> None:
    # B = 1: ncps's wrapper squeezes Δt to a scalar, which is correct for one stream.
    ref, ours = _pair(kind, seed=1)
    x = torch.randn(1, 8, INPUTS)
    dt = torch.rand(1, 8, 1) * 3 + 0.05
    with torch.no_grad():
        y_ref, h_ref = ref(x, timespans=dt)
        y, h = ours(x, dt[..., 0])
    assert (y - y_ref).abs().max() <= TOL
    assert (h - _state(h_ref)).abs().max() <= TOL


def _ncps_stepped(ref: torch.nn.Module, x: torch.Tensor, dt: torch.Tensor) -> torch.Tensor:
    """ncps's cell stepped with Δt shaped (B, 1): per-sample Δt done right with ncps's math."""
    cell: Any = ref.rnn_cell
    h = torch.zeros(x.shape[0], ref.state_size)  # type: ignore[arg-type]
    c = torch.zeros_like(h)
    for t in range(x.shape[1]):
        if getattr(ref, "use_mixed", False):
            h, c = ref.lstm(x[:, t], (h, c))  # type: ignore[operator]
        _, h = cell(x[:, t], h, dt[:, t : t + 1])
    return torch.cat([h, c], 1) if getattr(ref, "use_mixed", False) else h


@pytest.mark.parametrize(
    "kind", ["cfc_default", "cfc_pure_gelu", "wired_cfc_autoncp", "ltc_autoncp", "ltc_mixed"]
)
def test_per_sample_dt_with_batch_equal_to_units(kind: str) -> None:
    ref, ours = _pair(kind, seed=2)
    B = ours.state_size if not isinstance(ours.cell, MixedMemoryCell) else ours.state_size // 2
    x = torch.randn(B, 5, INPUTS)
    dt = torch.rand(B, 5) * 4
    with torch.no_grad():
        expected = _ncps_stepped(ref, x, dt)
        _, h = ours(x, dt)
    assert (h - expected).abs().max() <= TOL
    # ncps's own wrapper squeezes Δt to [B] and broadcasts it across units: silently wrong when
    # a layer has B units, a shape error when a wired layer has another size.
    layer_sizes = set(getattr(ref.rnn_cell, "layer_sizes", [ref.state_size]))
    if layer_sizes != {B}:
        with torch.no_grad(), pytest.raises(RuntimeError, match="must match the size"):
            ref(x, timespans=dt.unsqueeze(-1))
        return
    with torch.no_grad():
        _, h_wrapper = ref(x, timespans=dt.unsqueeze(-1))
    assert (_state(h_wrapper) - expected).abs().max() > 1e-3


def test_bare_cells_import() -> None:
    torch.manual_seed(3)
    wiring = AutoNCP(14, 3, seed=6)
    ltc = _randomize(LTCCell(wiring, in_features=INPUTS, ode_unfolds=4), 3)
    cfc = _randomize(CfCCell(INPUTS, 9, mode="no_gate", backbone_units=11), 3)
    x = torch.randn(5, INPUTS)
    h_ltc, h_cfc = torch.randn(5, 14) * 0.2, torch.randn(5, 9) * 0.2
    dt = torch.rand(5, 1) * 2
    with torch.no_grad():
        for ref, h in ((ltc, h_ltc), (cfc, h_cfc)):
            y_ref, h_ref = ref(x, h, dt)
            y, h_new = from_ncps(ref).step(x, dt[:, 0], h)
            assert (y - y_ref).abs().max() <= TOL
            assert (h_new - h_ref).abs().max() <= TOL


def test_imported_ltc_is_finite_where_ncps_is_nan() -> None:
    ref, ours = _pair("ltc_autoncp")
    x = torch.randn(3, INPUTS)
    h = torch.randn(3, 16) * 0.3
    with torch.no_grad():
        _, h_ref = ref.rnn_cell(x, h, torch.zeros(3, 1))  # type: ignore[operator]
        _, h_ours = ours.step(x, torch.zeros(3), h)
    assert bool(torch.isnan(h_ref).any())
    torch.testing.assert_close(h_ours, h)  # Δt = 0: no time passes, the state stays


def test_model_metadata_is_passed_through() -> None:
    ref, _ = _pair("cfc_proj")
    model = from_ncps(
        ref,
        time_unit=0.02,
        feature_names=[f"s{i}" for i in range(INPUTS)],
        output_names=["a", "b", "c"],
        name="imported",
    )
    assert model.time_unit == 0.02
    assert model.output_names == ["a", "b", "c"]
    assert model.name == "imported"


@pytest.mark.parametrize("fmt", ["pt", "safetensors"])
@pytest.mark.parametrize(
    ("kind", "config"),
    [
        ("cfc_no_gate_silu", {"kind": "cfc", "units": 12, "mode": "no_gate", "activation": "silu"}),
        (
            "cfc_mixed_proj",
            {"kind": "cfc", "units": 12, "mode": "default", "activation": "lecun_tanh"},
        ),
        (
            "cfc_relu_2layers_dropout",
            {
                "kind": "cfc",
                "units": 10,
                "mode": "default",
                "activation": "relu",
                "backbone_dropout": 0.2,
            },
        ),
        ("ltc_autoncp", {"kind": "ltc", "implicit_param_constraints": True, "ode_unfolds": 6}),
        ("ltc_mixed", {"kind": "ltc", "implicit_param_constraints": True, "ode_unfolds": 6}),
    ],
)
def test_load_ncps_state_dict(kind: str, config: dict[str, Any], fmt: str, tmp_path: Path) -> None:
    ref, ours = _pair(kind, seed=4)
    path = tmp_path / f"weights.{fmt}"
    if fmt == "pt":
        torch.save(ref.state_dict(), path)
    else:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(path))
    if kind.startswith("ltc"):
        config = {**config, "wiring": ref._wiring}  # an ncps wiring object
    loaded = load_ncps_state_dict(path, input_size=INPUTS, **config)
    x = torch.randn(3, 6, INPUTS)
    with torch.no_grad():
        assert (loaded(x)[0] - ours(x)[0]).abs().max() == 0.0


def test_load_accepts_our_wiring_too() -> None:
    ref, ours = _pair("ltc_autoncp")
    wiring = OurAutoNCP(16, 3, seed=4)
    wiring.build(INPUTS)
    loaded = load_ncps_state_dict(
        ref.state_dict(),
        kind="ltc",
        input_size=INPUTS,
        wiring=wiring,
        implicit_param_constraints=True,
        ode_unfolds=6,
    )
    x = torch.randn(2, 4, INPUTS)
    with torch.no_grad():
        assert (loaded(x)[0] - ours(x)[0]).abs().max() == 0.0


def test_state_dict_import_asks_for_what_it_cannot_know() -> None:
    ref, _ = _pair("ltc_autoncp")
    sd = ref.state_dict()
    with pytest.raises(ValueError, match="kind='cfc' or kind='ltc'"):
        load_ncps_state_dict(sd, input_size=INPUTS)
    with pytest.raises(ValueError, match="does not record"):
        load_ncps_state_dict(sd, kind="ltc", input_size=INPUTS, wiring=ref._wiring)
    with pytest.raises(ValueError, match="wiring="):
        load_ncps_state_dict(
            sd, kind="ltc", input_size=INPUTS, ode_unfolds=6, implicit_param_constraints=True
        )
    cfc, _ = _pair("cfc_default")
    with pytest.raises(ValueError, match="does not record"):
        load_ncps_state_dict(cfc.state_dict(), kind="cfc", input_size=INPUTS, units=12)
    with pytest.raises(ValueError, match="does not fit"):
        load_ncps_state_dict(
            cfc.state_dict(),
            kind="cfc",
            input_size=INPUTS,
            units=13,
            mode="default",
            activation="lecun_tanh",
        )


def test_wired_ltc_wiring_class_is_kept() -> None:
    torch.manual_seed(0)
    model = from_ncps(LTC(INPUTS, FullyConnected(7, 2)))
    assert type(model.cell.wiring).__name__ == "FullyConnected"  # type: ignore[union-attr]
