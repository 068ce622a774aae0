"""Cells are registered by type name, not branched on: ``build_cell(config)`` rebuilds any cell
from its ``get_config()``.

Imports run one way: this module imports every cell module and no cell imports it. A cell that
holds cells (mixed memory) names the config keys of its parts in ``nested_cells``; they are
built here first and passed to its ``from_config`` by key.
"""

from __future__ import annotations

from typing import Any

from liquidcore.cells.base import LiquidCell
from liquidcore.cells.cfc import CfCCell, WiredCfCCell
from liquidcore.cells.ltc import LTCCell
from liquidcore.cells.mixed import MixedMemoryCell
from liquidcore.cells.recurrent import RECURRENT_CELLS

CELL_TYPES: dict[str, type[LiquidCell]] = {
    **{cls.cell_type: cls for cls in (LTCCell, CfCCell, WiredCfCCell, MixedMemoryCell)},
    **RECURRENT_CELLS,  # the baselines: lstm, gru, gru_dt, gru_d, ode_rnn
}


def cell_types() -> dict[str, type[LiquidCell]]:
    """A copy of the registered ``{type: class}`` table."""
    return dict(CELL_TYPES)


def build_cell(config: dict[str, Any]) -> LiquidCell:
    """Rebuild a cell of the registered class named by ``config["type"]``."""
    kind = config.get("type")
    if kind not in CELL_TYPES:
        valid = ", ".join(sorted(CELL_TYPES))
        raise ValueError(f"unknown cell type {kind!r}; valid types: {valid}")
    cls = CELL_TYPES[kind]
    parts = {key: build_cell(config[key]) for key in getattr(cls, "nested_cells", ())}
    return cls.from_config(config, **parts)
