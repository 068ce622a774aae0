"""Small models of every cell variant, for tests that must hold for all of them."""

from __future__ import annotations

import torch

from liquidcore.cells.base import LiquidCell
from liquidcore.heads import ReadoutHead
from liquidcore.model import LiquidModel

VARIANTS = (
    "cfc",
    "cfc_no_gate",
    "cfc_pure",
    "wired_cfc",
    "ltc",
    "ltc_fc",
    "mixed_cfc",
    "mixed_ltc",
)
# Baselines: recurrent cells in the same LiquidModel shell (liquidcore.cells.recurrent).
RECURRENT_VARIANTS = ("lstm", "gru_d")
INPUTS = 5


def make_cell(kind: str, inputs: int = INPUTS) -> LiquidCell:
    from liquidcore.cells.cfc import CfCCell, WiredCfCCell
    from liquidcore.cells.ltc import LTCCell
    from liquidcore.cells.mixed import MixedMemoryCell
    from liquidcore.wirings import AutoNCP, FullyConnected

    if kind == "cfc":
        return CfCCell(inputs, 12, backbone_units=16, backbone_layers=2)
    if kind == "cfc_no_gate":
        return CfCCell(inputs, 12, mode="no_gate", backbone_units=16, backbone_activation="silu")
    if kind == "cfc_pure":
        return CfCCell(inputs, 12, mode="pure", backbone_units=16, backbone_activation="gelu")
    if kind == "wired_cfc":
        return WiredCfCCell(inputs, AutoNCP(14, 3, seed=7))
    if kind == "ltc":
        return LTCCell(AutoNCP(14, 3, seed=5), in_features=inputs, implicit_param_constraints=True)
    if kind == "ltc_fc":
        return LTCCell(FullyConnected(8, 3), in_features=inputs, ode_unfolds=4)
    if kind == "mixed_cfc":
        return MixedMemoryCell(CfCCell(inputs, 10, backbone_units=16))
    if kind == "mixed_ltc":
        return MixedMemoryCell(LTCCell(AutoNCP(12, 2, seed=3), in_features=inputs))
    if kind in RECURRENT_VARIANTS:
        from liquidcore.cells.recurrent import RECURRENT_CELLS

        return RECURRENT_CELLS[kind](inputs, 9)
    raise ValueError(kind)


def make_model(kind: str, *, seed: int = 0, classification: bool = False) -> LiquidModel:
    torch.manual_seed(seed)
    cell = make_cell(kind)
    if classification:
        head = ReadoutHead(cell.output_size, 4, kind="classification")
    else:
        head = ReadoutHead(cell.output_size, 2, target_mean=[1.0, -2.0], target_std=[0.5, 3.0])
    model = LiquidModel(
        cell,
        head,
        input_mean=[0.1 * i for i in range(INPUTS)],
        input_std=[1.0 + 0.2 * i for i in range(INPUTS)],
        time_unit=0.5,
        feature_names=[f"f{i}" for i in range(INPUTS)],
        output_names=["c0", "c1", "c2", "c3"] if classification else ["a", "b"],
        name=f"test-{kind}",
    )
    return model.eval()


def irregular_batch(
    model: LiquidModel, batch: int = 3, steps: int = 6, seed: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, steps, model.input_size, generator=g)
    dt = torch.rand(batch, steps, generator=g) * 3.0  # seconds, varying per stream and step
    dt[0, min(2, steps - 1)] = 0.0  # two readings sharing a timestamp
    return x, dt
