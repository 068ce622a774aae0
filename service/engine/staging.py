"""Getting a batch onto the device: padded batch buckets and pinned host buffers.

Buckets: a batched step over ``B`` streams is run at the smallest configured bucket size
``>= B`` (padding rows are masked: they start from ``init_state``, take no step, and are cut
from the outputs), so the device sees a handful of fixed shapes. That is what CUDA graphs
need (a graph is captured per shape) and keeps allocator caches warm; on a CPU it only adds
work, so no buckets is the CPU default. A batch larger than every bucket runs at its own size.

Staging: on CUDA the host arrays are copied into pinned (page-locked) buffers, reused per
shape, and sent with ``non_blocking=True``; the copies overlap with the host's remaining work
until the outputs are read back (a blocking copy, which orders the reuse of the buffers).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

import numpy as np
import torch

# Default buckets on CUDA: powers of four up to the largest batch (it is added).
CUDA_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096)


def check_buckets(buckets: Sequence[int]) -> tuple[int, ...]:
    """``buckets`` sorted, or ``ValueError`` when one is not a positive integer."""
    out = tuple(sorted({int(b) for b in buckets}))
    if any(b < 1 for b in out):
        raise ValueError(f"batch buckets must be positive integers; got {list(buckets)}")
    return out


def default_buckets(device: torch.device, max_batch: int) -> tuple[int, ...]:
    """No buckets on a CPU; on CUDA :data:`CUDA_BUCKETS` below ``max_batch``, and it."""
    if device.type != "cuda":
        return ()
    return check_buckets([b for b in CUDA_BUCKETS if b < max_batch] + [max_batch])


def bucket_size(n: int, buckets: Sequence[int]) -> int:
    """The smallest bucket ``>= n`` (``n`` itself when there is none)."""
    i = bisect.bisect_left(buckets, n)
    return buckets[i] if i < len(buckets) else n


class HostStaging:
    """Host-to-device copies for one device: pinned and non-blocking on CUDA, plain elsewhere."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.pinned = device.type == "cuda" and torch.cuda.is_available()
        self._buffers: dict[tuple[str, tuple[int, ...], np.dtype], torch.Tensor] = {}

    def to_device(self, name: str, array: np.ndarray) -> torch.Tensor:
        """``array`` on the device (through a reused pinned buffer on CUDA)."""
        if not self.pinned:
            if not array.flags.writeable:  # torch shares the memory; a read-only view warns
                array = array.copy()
            return torch.from_numpy(array).to(self.device)
        key = (name, array.shape, array.dtype)
        buf = self._buffers.get(key)
        if buf is None:
            buf = torch.empty(array.shape, dtype=torch.from_numpy(array[:0]).dtype).pin_memory()
            self._buffers[key] = buf
        buf.numpy()[...] = array
        return buf.to(self.device, non_blocking=True)
