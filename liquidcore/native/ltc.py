"""ctypes bindings of the native fused semi-implicit LTC loop (``ltc_loop.h``).

Same contract as the PyTorch implementation in :mod:`liquidcore.functional.ltc_fused`
(``fused_forward`` and ``FusedSemiImplicit.backward``), which stays the reference and the path
for every case the kernels do not cover (CUDA, other dtypes, tracing, no compiler,
``LIQUIDCORE_NATIVE=off``). The kernels keep a tile of 16 streams in L1 across all synapses and
sub-steps instead of streaming ``[E, B]`` intermediates through memory once per operation, and
compute the sigmoid in registers.

Imports run one way: ``functional`` calls this module, which knows nothing of ``functional``
(synapses arrive as plain index tensors).
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from liquidcore.native.runtime import library

TILE = 16  # streams per tile (ltc_loop.c)
_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}
_P = ctypes.c_void_p
_I = ctypes.c_int
_L = ctypes.c_long


def supports(*tensors: Tensor) -> bool:
    """Whether the native kernels can run on these tensors (CPU, one float32/float64 dtype,
    kernels built and enabled)."""
    dtype = tensors[0].dtype
    if dtype not in _SUFFIX:
        return False
    if any(t.device.type != "cpu" or t.dtype != dtype for t in tensors):
        return False
    return library() is not None


def _function(name: str, dtype: torch.dtype) -> ctypes._CFuncPtr:  # type: ignore[name-defined]
    lib = library()
    assert lib is not None, "supports() was not checked"
    fn = getattr(lib, f"{name}_{_SUFFIX[dtype]}")
    if fn.restype is not None:  # first use: declare the signature
        fn.restype = None
        head = [_I, _I, _L, _L, _I]  # T, H, B, E, U
        if name == "ltc_forward":
            fn.argtypes = [*head, *([_P] * 9), _I]
        else:
            fn.argtypes = [*head, *([_P] * 14), _I]
    return fn


def _ptr(t: Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _threads(B: int) -> int:
    return max(1, min(torch.get_num_threads(), -(-B // TILE)))


class _Operands(NamedTuple):
    """Sizes and contiguous operands shared by both kernels."""

    sizes: tuple[int, int, int, int, int]  # T, H, B, E, unfolds
    v0: Tensor
    drive: Tensor
    dt: Tensor
    cu: Tensor
    pair_w: Tensor
    reduce_w: Tensor
    src: Tensor
    starts: Tensor  # start of each unit's synapses (idx.reduce_offsets[:H])


def _operands(tensors: Sequence[Tensor], src: Tensor, starts: Tensor, unfolds: int) -> _Operands:
    """From ``(v0, drive, dt, cu, pair_w, reduce_w)``, each synapse's source ``src`` ``[E]``
    and the start of each unit's synapses ``starts`` ``[H]`` (int64, synapses sorted by
    destination)."""
    v0, drive, dt, cu, pair_w, reduce_w = tensors
    H, B = v0.shape
    sizes = (drive.shape[0], H, B, src.numel(), unfolds)
    tensors = (v0, drive, dt, cu, pair_w, reduce_w, src, starts[:H])
    return _Operands(sizes, *(t.contiguous() for t in tensors))


def forward(tensors: Sequence[Tensor], src: Tensor, starts: Tensor, unfolds: int) -> Tensor:
    """States after each step, ``[T, H, B]``; ``tensors`` are ``(v0, drive, dt, cu, pair_w,
    reduce_w)`` as ``fused_forward`` takes them."""
    ops = _operands(tensors, src, starts, unfolds)
    T, H, B, _, _ = ops.sizes
    out = ops.v0.new_empty(T, H, B)
    fn = _function("ltc_forward", ops.v0.dtype)
    fn(*ops.sizes, *map(_ptr, (*ops[1:], out)), _threads(B))
    return out


def backward(
    saved: Sequence[Tensor],
    src: Tensor,
    starts: Tensor,
    unfolds: int,
    g_out: Tensor,
    needs_input_grad: tuple[bool, ...],
) -> tuple[Tensor | None, ...]:
    """Gradients ``(v0, drive, dt, cu, pair_w, reduce_w, None, None)`` as
    ``FusedSemiImplicit.backward`` returns them; ``saved`` is ``(v0, out, drive, dt, cu,
    pair_w, reduce_w)``."""
    need = needs_input_grad
    v0, out, *rest = saved
    ops = _operands([v0, *rest], src, starts, unfolds)
    T, H, B, E, _ = ops.sizes
    threads = _threads(B)
    g_v0 = ops.v0.new_empty(H, B)
    g_drive = ops.drive.new_empty(T, 2 * H, B) if need[1] else None
    g_dt = ops.dt.new_empty(T, 1, B) if need[2] else None
    acc = ops.v0.new_zeros(threads, 4 * E + H)
    fn = _function("ltc_backward", ops.v0.dtype)
    tensors = (ops.v0, out.contiguous(), *ops[2:], g_out.contiguous(), g_v0, g_drive, g_dt, acc)
    fn(*ops.sizes, *map(_ptr, tensors), threads)
    total = acc.sum(0)
    g_pair = total[: 2 * E] if need[4] else None
    g_reduce = total[2 * E : 4 * E] if need[5] else None
    g_cu = total[4 * E :, None] if need[3] else None
    return (g_v0 if need[0] else None, g_drive, g_dt, g_cu, g_pair, g_reduce, None, None)
