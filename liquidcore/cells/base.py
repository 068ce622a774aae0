"""The contract every recurrent cell of liquidcore keeps.

A cell advances one event per stream: ``forward(x[B, F], h[B, S], dt[B, 1]) -> (out[B, O],
h'[B, S])``. ``dt`` arrives already checked and shaped by :mod:`liquidcore.timing`, in model
time units and in the cell's dtype. The state is one flat float tensor per stream (a mixed-memory
cell concatenates its parts), so a store can keep it as raw bytes. State is returned, never
mutated in place.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar, Protocol

import torch
from torch import Tensor, nn

from liquidcore.cells.fold_cache import FoldCache


class WiringLike(Protocol):
    """What the cells need of a wiring: ours (``liquidcore.wirings``) or an ncps one."""

    units: int
    input_dim: int | None
    output_dim: int | None
    adjacency_matrix: Any
    sensory_adjacency_matrix: Any

    @property
    def num_layers(self) -> int: ...

    def get_neurons_of_layer(self, layer_id: int) -> Sequence[int]: ...

    def build(self, input_dim: int) -> None: ...

    def is_built(self) -> bool: ...

    def erev_initializer(self) -> Any: ...

    def sensory_erev_initializer(self) -> Any: ...

    def get_config(self) -> dict[str, Any]: ...


class LiquidCell(nn.Module, ABC):
    """Base class of registered cells. Subclasses set ``cell_type`` and the three sizes."""

    cell_type: ClassVar[str]
    input_size: int
    state_size: int
    output_size: int
    # A cell that folds its parameters before computing (constraints, masks, packed products)
    # keeps the folds here: one cache mechanism for every cell (liquidcore.cells.fold_cache).
    _folds: FoldCache[Any] | None = None

    @abstractmethod
    def forward(self, x: Tensor, h: Tensor, dt: Tensor) -> tuple[Tensor, Tensor]:
        """One event per stream: ``(x[B,F], h[B,S], dt[B,1]) -> (out[B,O], h'[B,S])``."""

    @abstractmethod
    def output_of(self, h: Tensor) -> Tensor:
        """The output ``[B, O]`` that state ``h`` gives (what ``forward`` returns beside it)."""

    @abstractmethod
    def get_config(self) -> dict[str, Any]:
        """JSON-serialisable config with ``type`` = ``cell_type``; ``from_config`` inverts it."""

    @classmethod
    @abstractmethod
    def from_config(cls, config: dict[str, Any]) -> LiquidCell:
        """Rebuild the cell (same class, same shapes) from ``get_config()``."""

    def init_state(
        self, n: int, *, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> Tensor:
        """The state of ``n`` fresh streams (zeros, as ncps)."""
        p = next(self.parameters(), None)
        dtype = dtype or (p.dtype if p is not None else torch.float32)
        device = device or (p.device if p is not None else None)
        return torch.zeros(n, self.state_size, dtype=dtype, device=device)

    def clear_cache(self) -> None:
        """Forget the cached folds of this cell and of the cells inside it. Needed only after
        writes through ``param.data``, which bypass the version counters the cache checks."""
        for m in self.modules():
            if isinstance(m, LiquidCell) and m._folds is not None:
                m._folds.clear()

    def _apply(self, fn: Any, recurse: bool = True) -> LiquidCell:
        # .to() / .double() free storages whose addresses new ones may reuse, so a cache key of
        # (address, version) could match stale folds: forget them before moving.
        if self._folds is not None:
            self._folds.clear()
        return super()._apply(fn, recurse)

    def apply_constraints(self) -> None:
        """Project parameters back to their valid range after an optimiser step."""

    def masked_parameter_count(self) -> int:
        """Trainable stored parameters that a wiring masks out: kept in ncps's dense layout, they
        never affect the output, so parameter budgets should not count them. Cells that hold
        masks override this; a cell made of cells sums its parts."""
        return sum(c.masked_parameter_count() for c in outermost_cells(self, include_self=False))

    def forward_sequence(
        self, x: Tensor, h: Tensor, dt: Tensor, mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Apply ``T`` events in order: ``(x[B,T,F], h[B,S], dt[B,T], mask[B,T]|None)``.

        Returns ``(out[B,T,O], h_T)``. A masked-out step (``mask`` False) leaves the state as it
        was and outputs what that state gives. Cells may override this with a faster equivalent;
        it must equal stepping ``forward`` one event at a time.
        """
        outs = []
        for t, x_t in enumerate(x.unbind(1)):  # unbind: a slice's backward zero-fills all of x
            out, h_new = self(x_t, h, dt[:, t : t + 1])
            if mask is not None:
                keep = mask[:, t : t + 1]
                h_new = torch.where(keep, h_new, h)
                out = torch.where(keep, out, self.output_of(h))
            h = h_new
            outs.append(out)
        return torch.stack(outs, dim=1), h


def outermost_cells(module: nn.Module, include_self: bool = True) -> Iterator[LiquidCell]:
    """The liquid cells in ``module`` that no other liquid cell inside it contains."""
    if include_self and isinstance(module, LiquidCell):
        yield module
        return
    for child in module.children():
        yield from outermost_cells(child)
