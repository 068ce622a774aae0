"""Execute on the device: batched model calls on the engine's single worker thread.

Nothing here decides anything. The batch loop (``service.engine.core``) hands over rows that
``service.engine.semantics`` already planned (which steps, their Δt, where the state restarts);
this module pads them into tensors, runs one ``model.forward`` per model in
``torch.inference_mode`` on the worker thread, and returns numpy arrays.

Numerics: timestamps are float64 seconds; Δt is their float64 difference, handed to the model
as float32 seconds (the model divides by its time unit). States go in and come out as the exact
float32 bytes the model returned, so serving equals ``model.step`` run offline on the same
events.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch

from liquidcore import native
from liquidcore.device import resolve_device
from service.engine.errors import EngineStopped
from service.engine.registry import ServableModel
from service.metrics import Metrics

R = TypeVar("R")


@dataclass(slots=True)
class Row:
    """One stream's input to a batched model call."""

    h0: bytes | None  # stored float32 state, or None: init_state
    x: np.ndarray  # [n, F] float32
    dt: np.ndarray  # [n] float32 seconds
    fresh: np.ndarray  # [n] bool: re-initialise before this step

    @classmethod
    def of(
        cls,
        h0: bytes | None,
        xs: Sequence[Sequence[float]],
        dts: Sequence[float],
        fresh: Sequence[bool],
    ) -> Row:
        """A row from planned steps: inputs ``xs``, float64 Δt seconds ``dts`` (rounded to
        float32 here, once), and the steps before which the state restarts."""
        return cls(
            h0=h0,
            x=np.asarray(xs, dtype=np.float32),
            dt=np.asarray(dts, dtype=np.float64).astype(np.float32),
            fresh=np.asarray(fresh, dtype=bool),
        )


ModelCall = tuple[ServableModel, list[Row]]


def forward_rows(
    model: ServableModel, rows: list[Row], device: torch.device
) -> tuple[np.ndarray, np.ndarray]:
    """One ``model.forward`` over ``rows`` padded to the longest (masked, restarts via
    ``reset``). Returns ``(y[B,T,O] presented, h_T[B,S] <f4)``. Call in inference mode."""
    B = len(rows)
    T = max(len(r.dt) for r in rows)
    F, S = model.input_size, model.state_size
    x = np.zeros((B, T, F), dtype=np.float32)
    dt = np.zeros((B, T), dtype=np.float32)
    mask = np.zeros((B, T), dtype=bool)
    reset = np.zeros((B, T), dtype=bool)
    for b, r in enumerate(rows):
        n = len(r.dt)
        x[b, :n] = r.x
        dt[b, :n] = r.dt
        mask[b, :n] = True
        reset[b, :n] = r.fresh
    resumed = [b for b, r in enumerate(rows) if r.h0 is not None]
    stored = None
    if resumed:
        raw = b"".join(rows[b].h0 or b"" for b in resumed)
        stored = torch.from_numpy(
            np.frombuffer(raw, dtype="<f4").reshape(len(resumed), S).copy()
        ).to(device)
    if stored is not None and len(resumed) == B:
        h0 = stored
    else:
        h0 = model.init_state(B, device=device).clone()
        if stored is not None:
            idx = torch.as_tensor(resumed, dtype=torch.long, device=device)
            h0[idx] = stored.to(h0.dtype)
    y, hT = model.forward(
        torch.from_numpy(x).to(device),
        torch.from_numpy(dt).to(device),
        h0=h0,
        mask=None if mask.all() else torch.from_numpy(mask).to(device),
        reset=torch.from_numpy(reset).to(device) if reset.any() else None,
    )
    y = model.present(y)
    y_np = y.detach().to("cpu").numpy()
    h_np = hT.detach().to("cpu", torch.float32).numpy().astype("<f4", copy=False)
    return y_np, np.ascontiguousarray(h_np)


def predict_one(
    model: ServableModel, h: bytes, x: bytes, dt: float, device: torch.device
) -> list[float]:
    """The output at ``dt`` seconds after the state ``h`` with input ``x`` held. That is
    ``advance(h, dt, x)`` read out; ``step`` with the held input computes exactly that and also
    returns the output, so it is used."""
    with torch.inference_mode():
        h_t = torch.from_numpy(np.frombuffer(h, dtype="<f4").copy()).reshape(1, -1).to(device)
        x_t = torch.from_numpy(np.frombuffer(x, dtype="<f4").copy()).reshape(1, -1).to(device)
        dt_t = torch.tensor([dt], dtype=torch.float32, device=device)
        y, _ = model.step(x_t, dt_t, h_t)
        y = model.present(y)
        return [float(v) for v in y[0].detach().to("cpu").tolist()]


class DeviceExecutor:
    """The engine's single worker thread and its device. Every model call runs here, one at a
    time; after :meth:`close` a call raises :class:`EngineStopped`."""

    def __init__(self, device: str, metrics: Metrics) -> None:
        self.device = resolve_device(device)
        self._metrics = metrics
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="liquid-engine")
        self._closed = False

    async def _call(self, fn: Callable[..., R], *args: object) -> R:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn, *args)
        except RuntimeError as exc:
            if self._closed:
                raise EngineStopped("the engine is stopped") from exc
            raise

    async def place(self, models: Iterable[ServableModel]) -> None:
        """Build or load the native kernels (before readiness, not on the first request), move
        ``nn.Module`` models to the device and put them in eval mode; other models are the
        caller's to place."""
        await self._call(native.warm)
        for model in models:
            to = getattr(model, "to", None)
            if callable(to):
                await self._call(to, self.device)
            eval_ = getattr(model, "eval", None)
            if callable(eval_):
                eval_()

    async def forward(self, calls: list[ModelCall]) -> list[tuple[np.ndarray, np.ndarray]]:
        """One :func:`forward_rows` per model; per model ``(y[B,T,O], h_T[B,S] <f4)``."""
        return await self._call(self._forward_all, calls)

    def _forward_all(self, calls: list[ModelCall]) -> list[tuple[np.ndarray, np.ndarray]]:
        t0 = time.perf_counter()
        out = []
        with torch.inference_mode():
            for model, rows in calls:
                out.append(forward_rows(model, rows, self.device))
        self._metrics.batch_compute.observe(time.perf_counter() - t0)
        return out

    async def predict_one(self, model: ServableModel, h: bytes, x: bytes, dt: float) -> list[float]:
        """:func:`predict_one` on the worker thread."""
        return await self._call(predict_one, model, h, x, dt, self.device)

    def close(self) -> None:
        """Run nothing more (a running call finishes)."""
        self._closed = True
        self._executor.shutdown(wait=False)
