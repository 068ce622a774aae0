"""No poisoned states: the check that a computed step is finite before it may be committed,
and the search for the event that made it non-finite.

A step is finite when its presented outputs and the state it leaves are all finite. The batch
loop (``service.engine.core``) checks every stream's computed row; for a stream that failed it
asks :func:`first_non_finite_step` which planned step went wrong, refuses that event
(``service.engine.semantics.NonFinite``), plans the stream again without it and recomputes, so
the stream's other events are answered as if the refused one had never been sent and no
non-finite state is ever stored.
"""

from __future__ import annotations

import numpy as np

from service.engine.compute import DeviceExecutor, Row
from service.engine.registry import ServableModel


def finite_row(ys: np.ndarray, h: np.ndarray) -> bool:
    """``ys[n, O]`` (a row's outputs) and ``h[S]`` (its final state) are all finite."""
    return bool(np.isfinite(ys).all() and np.isfinite(h).all())


def first_non_finite_output(ys: np.ndarray) -> int | None:
    """The first step of ``ys[n, O]`` with a non-finite output (``None``: there is none)."""
    bad = ~np.isfinite(ys).all(axis=1)
    return int(np.argmax(bad)) if bad.any() else None


async def first_non_finite_step(
    executor: DeviceExecutor, model: ServableModel, row: Row, ys: np.ndarray
) -> int:
    """The first step of ``row`` after which the state or the output is non-finite, given the
    batched call's outputs ``ys[n, O]`` for it and that the row as a whole was not finite.

    The batched call returns only the final state, and a state can go non-finite with a finite
    output (a saturating readout), so the row is stepped one event at a time (this path is
    rare) up to the first non-finite output. Should stepping alone stay finite (another kernel
    than the batched one), the batched answer decides: its first non-finite output, else the
    last step."""
    n = len(row.dt)
    stop = first_non_finite_output(ys)
    last = n - 1 if stop is None else stop
    h0 = row.h0
    for j in range(last + 1):
        step = Row(h0, row.x[j : j + 1], row.dt[j : j + 1], row.fresh[j : j + 1])
        ((y, h),) = await executor.forward([(model, [step], None)])
        if not finite_row(y[0, :1], h[0]):
            return j
        h0 = h[0].tobytes()
    return last
