"""Apply ``Settings.torch_threads`` to this process and to the worker processes it starts.

Torch reads ``OMP_NUM_THREADS`` when it starts, so setting it here sizes spawned uvicorn
workers; a process that has already imported torch (one worker: the app is built before the
server runs) is set directly. Inter-op threads stay at one: the engine runs one model call at
a time on its own worker thread.
"""

from __future__ import annotations

import contextlib
import os
import sys


def apply_torch_threads(threads: int) -> None:
    """Use ``threads`` intra-op threads here and in processes started from now on."""
    if threads < 1:
        raise ValueError(f"threads must be >= 1; got {threads}")
    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)
        with contextlib.suppress(RuntimeError):  # only possible before any parallel work
            torch.set_num_interop_threads(1)
