"""ctypes binding of the native one-call LTC inference step (``ltc_step.h``).

At small batches an LTC step is mostly per-call overhead: a chain of a dozen torch operations
(input mapping, sensory currents, layout changes, the loop, the output mapping) around a kernel
that runs for microseconds. This path is one C call per step on the tensors as the cell gets
and returns them (``x [B, S]``, ``h [B, H]``, ``dt [B, 1]``). Everything that does not change
between parameter updates (the folded weights, their addresses in a C struct, the bound
function) is prepared once, in a :class:`StepPlan`; a call then allocates the two outputs and
passes seven pointers.

Same contract as the PyTorch path for ``T = 1`` without autograd; the callers (the LTC cell)
use it only then, and fall back to the PyTorch path whenever :func:`step_plan` or :func:`step`
returns ``None`` (no kernels, CUDA, other dtypes).

Imports run one way: the cell calls this module, which knows nothing of ``functional`` (weights
arrive as plain tensors).
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from liquidcore.native.ltc import TILE
from liquidcore.native.runtime import library

_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}
_P = ctypes.c_void_p


class NativeSynapses(NamedTuple):
    """A synapse set sorted by destination: ``pair_w`` ``[2E]`` (sigma, bias interleaved),
    ``reduce_w`` ``[2E]`` (w·erev, then w), ``src`` ``[E]`` and each unit's first synapse
    ``starts`` ``[H]`` (int64)."""

    pair_w: Tensor
    reduce_w: Tensor
    src: Tensor
    starts: Tensor


class _PlanStruct(ctypes.Structure):
    """``ltc_step_plan`` in ltc_loop.c, field for field."""

    _fields_ = [
        ("H", ctypes.c_int),
        ("S", ctypes.c_int),
        ("M", ctypes.c_int),
        ("U", ctypes.c_int),
        ("E", ctypes.c_long),
        ("Es", ctypes.c_long),
        *((name, _P) for name in ("leak", "cu", "in_w", "in_b", "out_w", "out_b")),
        *((name, _P) for name in ("pair_w", "reduce_w", "sigma", "bias", "src", "starts")),
        *((name, _P) for name in ("s_sigma", "s_bias", "s_reduce_w", "s_src", "s_starts")),
    ]


class StepPlan(NamedTuple):
    """Folded weights in the kernel's layout, their C struct and the bound kernel."""

    dtype: torch.dtype
    inputs: int
    units: int
    motor: int
    address: int  # of the C struct
    kernel: Callable[..., None]
    keep: tuple[object, ...]  # the struct and every tensor it points into


def _kernel(dtype: torch.dtype) -> Callable[..., None] | None:
    lib = library()
    if lib is None:
        return None
    fn = getattr(lib, f"ltc_step_{_SUFFIX[dtype]}")
    if fn.restype is not None:  # first use: declare the signature
        fn.restype = None
        fn.argtypes = [_P, ctypes.c_long, _P, _P, _P, _P, _P, ctypes.c_int]
    return fn


def step_plan(
    *,
    leak: Tensor,
    cu: Tensor,
    recurrent: NativeSynapses,
    sensory: NativeSynapses,
    input_w: Tensor | None,
    input_b: Tensor | None,
    output_w: Tensor | None,
    output_b: Tensor | None,
    inputs: int,
    motor: int,
    unfolds: int,
) -> StepPlan | None:
    """The plan of one cell's folded weights (``leak`` ``[2H]``, ``cu`` ``unfolds·cm + tiny``
    ``[H]`` or ``[H, 1]``, mappings ``[inputs]`` / ``[motor]`` or ``None``; the output is the
    first ``motor`` units, mapped); ``None`` where the native step cannot run (no kernels, not
    CPU float32/float64)."""
    dtype = leak.dtype
    reals = [leak, cu, recurrent.pair_w, recurrent.reduce_w, sensory.pair_w, sensory.reduce_w]
    reals += [t for t in (input_w, input_b, output_w, output_b) if t is not None]
    indices = [recurrent.src, recurrent.starts, sensory.src, sensory.starts]
    if dtype not in _SUFFIX or any(t.dtype != dtype for t in reals):
        return None
    if any(t.device.type != "cpu" for t in reals + indices):
        return None
    kernel = _kernel(dtype)
    if kernel is None:
        return None

    def own(t: Tensor, as_type: torch.dtype = dtype) -> Tensor:
        return t.detach().to(as_type).contiguous()

    def maybe(t: Tensor | None) -> Tensor | None:
        return None if t is None else own(t)

    H = leak.shape[0] // 2
    rec_pair, sen_pair = own(recurrent.pair_w), own(sensory.pair_w)
    tensors: dict[str, Tensor | None] = {
        "leak": own(leak),
        "cu": own(cu.reshape(-1)),
        "in_w": maybe(input_w),
        "in_b": maybe(input_b),
        "out_w": maybe(output_w),
        "out_b": maybe(output_b),
        "pair_w": rec_pair,
        "reduce_w": own(recurrent.reduce_w),
        "sigma": rec_pair[0::2].contiguous(),
        "bias": rec_pair[1::2].contiguous(),
        "src": own(recurrent.src, torch.int64),
        "starts": own(recurrent.starts[:H], torch.int64),
        "s_sigma": sen_pair[0::2].contiguous(),
        "s_bias": sen_pair[1::2].contiguous(),
        "s_reduce_w": own(sensory.reduce_w),
        "s_src": own(sensory.src, torch.int64),
        "s_starts": own(sensory.starts[:H], torch.int64),
    }
    struct = _PlanStruct(
        H=H,
        S=int(inputs),
        M=int(motor),
        U=int(unfolds),
        E=int(recurrent.src.numel()),
        Es=int(sensory.src.numel()),
        **{k: (None if t is None else t.data_ptr()) for k, t in tensors.items()},
    )
    return StepPlan(
        dtype=dtype,
        inputs=int(inputs),
        units=H,
        motor=int(motor),
        address=ctypes.addressof(struct),
        kernel=kernel,
        keep=(struct, *tensors.values()),
    )


def _threads(B: int) -> int:
    return 1 if B <= TILE else min(torch.get_num_threads(), -(-B // TILE))


def step(plan: StepPlan, x: Tensor, h: Tensor, dt: Tensor) -> tuple[Tensor, Tensor] | None:
    """``(out [B, M], h' [B, H])`` of one step, or ``None`` when these tensors cannot take
    the native step (another dtype or device than the plan's, other shapes: the caller's
    PyTorch path then reports what is wrong)."""
    dtype = plan.dtype
    if x.dtype != dtype or h.dtype != dtype or dt.dtype != dtype:
        return None
    if not (x.is_cpu and h.is_cpu and dt.is_cpu):
        return None
    B = x.shape[0]
    if x.shape != (B, plan.inputs) or h.shape != (B, plan.units) or dt.shape != (B, 1):
        return None
    x, h, dt = x.contiguous(), h.contiguous(), dt.contiguous()
    h_new = torch.empty(B, plan.units, dtype=dtype)
    out = torch.empty(B, plan.motor, dtype=dtype)
    plan.kernel(
        plan.address,
        B,
        x.data_ptr(),
        h.data_ptr(),
        dt.data_ptr(),
        h_new.data_ptr(),
        out.data_ptr(),
        _threads(B),
    )
    return out, h_new
