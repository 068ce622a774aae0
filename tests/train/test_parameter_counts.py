"""Parameters in use: a wiring's masked-out synapse parameters are stored (ncps's dense layout)
but can never affect the output, so exactly they get zero gradient and are left out."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from liquidcore.cells.cfc import CfCCell, WiredCfCCell
from liquidcore.cells.ltc import LTCCell
from liquidcore.cells.mixed import MixedMemoryCell
from liquidcore.train import count_parameters, count_parameters_in_use
from liquidcore.wirings import AutoNCP, FullyConnected

F_IN = 5


def _zero_gradient_entries(cell: nn.Module) -> int:
    """Entries of the trainable parameters whose gradient is exactly zero after a backward
    pass through the new state and the output (all neurons, several events)."""
    torch.manual_seed(0)
    x = torch.randn(8, 4, F_IN)
    h = cell.init_state(8)
    loss = torch.zeros(())
    for t in range(x.shape[1]):
        out, h = cell(x[:, t], h, torch.full((8, 1), 0.7))
        loss = loss + (h**2).sum() + out.sum()
    params = [p for p in cell.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    pairs = zip(params, grads, strict=True)
    return sum(p.numel() if g is None else int((g == 0).sum()) for p, g in pairs)


CELLS = {
    "ltc_ncp": lambda: LTCCell(AutoNCP(12, 3, seed=7), in_features=F_IN),
    "ltc_fc": lambda: LTCCell(FullyConnected(6, 3), in_features=F_IN),
    "wired_cfc": lambda: WiredCfCCell(F_IN, AutoNCP(14, 3, seed=7)),
    "cfc": lambda: CfCCell(F_IN, 6, backbone_units=8),
    "cfc_mixed": lambda: MixedMemoryCell(WiredCfCCell(F_IN, AutoNCP(14, 3, seed=7))),
}


@pytest.mark.parametrize("kind", sorted(CELLS))
def test_masked_parameters_are_exactly_those_without_gradient(kind: str) -> None:
    cell = CELLS[kind]()
    masked = cell.masked_parameter_count()
    assert masked == _zero_gradient_entries(cell)
    assert count_parameters_in_use(cell) == count_parameters(cell) - masked
    if kind in ("ltc_fc", "cfc"):
        assert masked == 0
    else:
        assert 0 < masked < count_parameters(cell)


def test_ltc_ncp_counts_four_parameters_per_absent_synapse() -> None:
    wiring = AutoNCP(12, 3, seed=7)
    cell = LTCCell(wiring, in_features=F_IN)
    absent = 12 * 12 - wiring.synapse_count + F_IN * 12 - wiring.sensory_synapse_count
    assert cell.masked_parameter_count() == 4 * absent


def test_a_model_counts_the_masked_parameters_of_every_cell_inside() -> None:
    model = nn.Sequential(CELLS["ltc_ncp"](), nn.Linear(3, 2))
    cell = model[0]
    assert isinstance(cell, LTCCell)
    expected = count_parameters(model) - cell.masked_parameter_count()
    assert count_parameters_in_use(model) == expected


@pytest.mark.parametrize("kind", ["ltc_ncp", "wired_cfc"])
def test_frozen_cells_count_nothing_in_use_beyond_the_trainable_head(kind: str) -> None:
    cell = CELLS[kind]()
    model = nn.Sequential(cell, nn.Linear(3, 2))
    cell.requires_grad_(False)  # fine-tuning the head only
    assert cell.masked_parameter_count() == 0
    assert count_parameters_in_use(model) == count_parameters(model) == 3 * 2 + 2
