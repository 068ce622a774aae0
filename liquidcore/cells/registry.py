"""Cells are registered by type name, not branched on: ``build_cell(config)`` rebuilds any cell
from its ``get_config()``."""

from __future__ import annotations

from typing import Any

from liquidcore.cells.base import LiquidCell


def cell_types() -> dict[str, type[LiquidCell]]:
    """The registered ``{type: class}`` table (imported lazily: cells import the registry)."""
    from liquidcore.cells.cfc import CfCCell, WiredCfCCell
    from liquidcore.cells.ltc import LTCCell
    from liquidcore.cells.mixed import MixedMemoryCell

    return {cls.cell_type: cls for cls in (LTCCell, CfCCell, WiredCfCCell, MixedMemoryCell)}


def build_cell(config: dict[str, Any]) -> LiquidCell:
    """Rebuild a cell of the registered class named by ``config["type"]``."""
    types = cell_types()
    kind = config.get("type")
    if kind not in types:
        raise ValueError(f"unknown cell type {kind!r}; valid types: {', '.join(sorted(types))}")
    return types[kind].from_config(config)
