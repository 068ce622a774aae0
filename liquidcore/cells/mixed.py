"""Mixed memory: an LSTM memory cell ahead of any liquid cell, as ncps's ``mixed_memory=True``.

Each step runs ncps's ``LSTMCell`` on ``(x, h, c)`` and then the inner cell on
``(x, h_lstm, Δt)``, exactly in the order of ncps's ``CfC`` and ``LTC`` wrappers. The state is one
flat tensor ``[h, c]`` (``inner.state_size`` each; ncps passes the tuple ``(h, c)``), so a store can
keep it as raw bytes.

Parameter names and the ncps key map (keys of an ``ncps.torch.CfC``/``LTC`` built with
``mixed_memory=True``):

=============================================  =============================================
ncps                                           ours
=============================================  =============================================
``lstm.input_map.weight/bias``                 ``lstm.input_map.weight/bias``
``lstm.recurrent_map.weight``                  ``lstm.recurrent_map.weight`` (no bias)
``rnn_cell.<key>``                             ``inner.<the inner cell's key for it>``
=============================================  =============================================

``MixedMemoryCell.ncps_key_map()`` returns that mapping, using the inner cell's own
``ncps_key_map`` where it has one.

Configs: the inner cell's config is nested under ``inner``. Rebuilding it needs the cell
registry, which lists this class, so this module never imports the registry:
:func:`liquidcore.cells.registry.build_cell` builds the keys named in ``nested_cells`` first
and hands the cells to :meth:`MixedMemoryCell.from_config` (imports run one way).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from liquidcore.cells.base import LiquidCell


def lstm_update(z: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """ncps's LSTM gate math on ``z = x @ W_in.T + b_in + h @ W_rec.T`` (``[B, 4S]``, chunks
    ``i, ig, fg, og`` in that order; forget gate biased by +1). Returns ``(h', c')``."""
    i, ig, fg, og = z.chunk(4, dim=1)
    c_new = c * torch.sigmoid(fg + 1.0) + torch.tanh(i) * torch.sigmoid(ig)
    return torch.tanh(c_new) * torch.sigmoid(og), c_new


class MemoryLSTM(nn.Module):
    """ncps's ``LSTMCell`` parameters and initialisation (names ``input_map``,
    ``recurrent_map``); the math is :func:`lstm_update`."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.input_map = nn.Linear(input_size, 4 * hidden_size, bias=True)
        self.recurrent_map = nn.Linear(hidden_size, 4 * hidden_size, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """As ncps: Xavier input weights, orthogonal recurrent weights, biases U(-0.1, 0.1)."""
        nn.init.xavier_uniform_(self.input_map.weight)
        nn.init.uniform_(self.input_map.bias, -0.1, 0.1)
        nn.init.orthogonal_(self.recurrent_map.weight)

    def forward(self, x: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        z = F.linear(x, self.input_map.weight, self.input_map.bias)
        z = z.addmm_(h, self.recurrent_map.weight.t())  # z is ours: accumulate in place
        return lstm_update(z, c)


class MixedMemoryCell(LiquidCell):
    """ncps's mixed memory around ``inner``: ``state = [h, c]``, output = the inner cell's."""

    cell_type: ClassVar[str] = "mixed_memory"
    nested_cells: ClassVar[tuple[str, ...]] = ("inner",)  # config keys holding cell configs

    def __init__(self, inner: LiquidCell) -> None:
        super().__init__()
        if not isinstance(inner, LiquidCell):
            raise ValueError(f"inner must be a LiquidCell; got {type(inner).__name__}")
        self.inner = inner
        self.lstm = MemoryLSTM(inner.input_size, inner.state_size)
        self.input_size = inner.input_size
        self.state_size = 2 * inner.state_size
        self.output_size = inner.output_size

    def forward(self, x: Tensor, h: Tensor, dt: Tensor) -> tuple[Tensor, Tensor]:
        n = self.inner.state_size
        h_lstm, c_new = self.lstm(x, h[:, :n], h[:, n:])
        out, h_new = self.inner(x, h_lstm, dt)
        return out, torch.cat([h_new, c_new], dim=1)

    def output_of(self, h: Tensor) -> Tensor:
        return self.inner.output_of(h[:, : self.inner.state_size])

    def apply_constraints(self) -> None:
        self.inner.apply_constraints()

    def get_config(self) -> dict[str, Any]:
        return {"type": self.cell_type, "inner": self.inner.get_config()}

    @classmethod
    def from_config(
        cls, config: dict[str, Any], inner: LiquidCell | None = None
    ) -> MixedMemoryCell:
        """Rebuild from ``get_config()`` around ``inner``, the cell ``config["inner"]``
        describes, built by the caller: ``liquidcore.cells.registry.build_cell(config)`` does
        both."""
        if config.get("type") != cls.cell_type:
            raise ValueError(
                f"MixedMemoryCell.from_config needs a config of type {cls.cell_type!r}; "
                f"got {config.get('type')!r}"
            )
        if inner is None:
            raise ValueError(
                "MixedMemoryCell.from_config needs the inner cell built from config['inner']: "
                "call liquidcore.cells.registry.build_cell(config), or pass inner="
            )
        if inner.cell_type != config["inner"].get("type"):
            raise ValueError(
                f"inner is a {inner.cell_type!r} cell but config['inner'] describes a "
                f"{config['inner'].get('type')!r} cell"
            )
        return cls(inner)

    def ncps_key_map(self, prefix: str = "") -> dict[str, str]:
        """``{ncps state_dict key: ours}`` for an ncps ``CfC``/``LTC`` with mixed memory whose
        state_dict keys start with ``prefix``."""
        out = {
            f"{prefix}lstm.input_map.weight": "lstm.input_map.weight",
            f"{prefix}lstm.input_map.bias": "lstm.input_map.bias",
            f"{prefix}lstm.recurrent_map.weight": "lstm.recurrent_map.weight",
        }
        inner_map = getattr(self.inner, "ncps_key_map", None)
        if callable(inner_map):
            pairs = inner_map(f"{prefix}rnn_cell.").items()
        else:  # same names as ncps
            pairs = ((f"{prefix}rnn_cell.{k}", k) for k in self.inner.state_dict())
        for k, v in pairs:
            out[k] = f"inner.{v}"
        return out
