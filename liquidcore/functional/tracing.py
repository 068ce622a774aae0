"""Whether a tracer, compiler or exporter is running: kernels then use plain, out-of-place ops
and cells build their folded weights in the graph instead of reading a cache."""

from __future__ import annotations

import torch


def is_tracing() -> bool:
    return bool(
        torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.compiler.is_exporting()
    )
