"""The one cache of folded weights that every cell uses.

Cells keep their parameters as stored (ncps's layout) and compute from them what their kernels
take: the *folded* weights (constraints applied, masks multiplied in, heads packed, synapses
gathered). With autograd on, or while tracing, compiling or exporting, that is recomputed on
every call, so gradients reach the parameters and graphs contain it. Otherwise it is cached,
keyed by every parameter's and persistent buffer's storage address and version counter:
optimiser steps, ``load_state_dict``, ``.to()`` and in-place edits all invalidate it. Writes
through ``param.data`` bypass version counters: cells expose ``clear_cache()`` for them.

Non-persistent buffers are not in the key: they are data a module derives itself (the LTC
cell's synapse index, from its masks), and a module that rebuilds them clears the cache. The key
is read on every cached call (about 0.2 µs per tensor), which at batch 1 is a visible part of a
step: the LTC cell's 20 index buffers would more than double it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

import torch
from torch import nn

from liquidcore.functional.tracing import is_tracing

T = TypeVar("T")
_Key = tuple[tuple[int, int], ...]


class FoldCache(Generic[T]):
    """Folded weights of one module, rebuilt when any of its tensors changes."""

    def __init__(self) -> None:
        # Where the tensors live, not the tensors: a parameter replaced by
        # load_state_dict(assign=True) or .to() is read afresh at each check.
        self._sources: list[tuple[dict[str, Any], str]] | None = None
        self._entry: tuple[_Key, T] | None = None

    def get(self, module: nn.Module, fold: Callable[[], T]) -> T:
        """``fold()``, cached under no_grad / inference mode (see the module doc)."""
        if torch.is_grad_enabled() or is_tracing():
            return fold()
        key = self._key(module)
        entry = self._entry
        if key is not None and entry is not None and entry[0] == key:
            return entry[1]
        # Plain tensors even under inference_mode, so the cache stays usable outside it.
        with torch.inference_mode(False), torch.no_grad():
            value = fold()
        if key is not None:
            self._entry = (key, value)
        return value

    def clear(self) -> None:
        """Forget the folded weights (and where the tensors live: new ones may be registered)."""
        self._sources = None
        self._entry = None

    def _key(self, module: nn.Module) -> _Key | None:
        if self._sources is None:
            self._sources = [
                (store, name)
                for m in module.modules()
                for store, skip in (
                    (m._parameters, set()),
                    (m._buffers, m._non_persistent_buffers_set),
                )
                for name, t in store.items()
                if t is not None and name not in skip
            ]
        try:
            return tuple([(s[n].data_ptr(), s[n]._version) for s, n in self._sources])
        except RuntimeError:  # inference tensors keep no version counter: do not cache
            return None
