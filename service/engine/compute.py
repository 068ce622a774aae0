"""Execute on the device: batched model calls on the engine's single worker thread.

Nothing here decides anything. The batch loop (``service.engine.core``) hands over rows that
``service.engine.semantics`` already planned (which steps, their Δt, where the state restarts);
this module pads them into tensors, runs one model call per model in ``torch.inference_mode``
(``model.step`` when every stream takes one step, else ``model.forward``), on the worker thread
or, for a small call on a CPU, on the caller's, and returns numpy arrays.

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
from service.engine.staging import HostStaging, bucket_size, check_buckets, default_buckets
from service.metrics import Metrics

R = TypeVar("R")


@dataclass(slots=True)
class Row:
    """One stream's input to a batched model call: its planned steps as plain sequences
    (numpy arrays are made once per call, for all rows, by :func:`forward_rows`)."""

    h0: bytes | None  # stored float32 state, or None: init_state
    x: Sequence[Sequence[float]]  # [n][F]
    dt: Sequence[float]  # [n] float64 seconds (rounded to float32 once, in forward_rows)
    fresh: Sequence[bool]  # [n]: re-initialise before this step

    @classmethod
    def of(
        cls,
        h0: bytes | None,
        xs: Sequence[Sequence[float]],
        dts: Sequence[float],
        fresh: Sequence[bool],
    ) -> Row:
        """A row from planned steps: inputs ``xs``, float64 Δt seconds ``dts``, and the steps
        before which the state restarts."""
        return cls(h0=h0, x=xs, dt=dts, fresh=fresh)


@dataclass(slots=True)
class StepBlock:
    """One step for each of ``B`` streams, as arrays: ``x[B,F]`` float32, ``dt[B]`` float64
    seconds, ``fresh[B]`` (re-initialise before the step), ``resumed[B]`` (the row continues
    ``h0[b]``; else it starts from ``init_state``), ``h0[B,S]`` float32 (rows not resumed are
    ignored)."""

    x: np.ndarray
    dt: np.ndarray
    fresh: np.ndarray
    resumed: np.ndarray
    h0: np.ndarray


ModelCall = tuple[ServableModel, list[Row], StepBlock | None]


def forward_rows(
    model: ServableModel,
    rows: list[Row],
    device: torch.device,
    buckets: Sequence[int] = (),
    staging: HostStaging | None = None,
    block: StepBlock | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One model call over ``rows`` and then the streams of ``block`` (one step each): when
    every stream takes one step, one ``model.step`` (:func:`forward_block`); otherwise one
    ``model.forward`` padded to the longest (masked, restarts via ``reset``). With
    ``buckets``, padded to the smallest bucket that holds them (padding rows are masked
    throughout and cut from the answer). Returns ``(y[B,T,O] presented, h_T[B,S] <f4)`` for
    the ``B`` rows given, the block's last. Call in inference mode."""
    R = len(rows)
    n = 0 if block is None else len(block.dt)
    B = R + n
    T = max([len(r.dt) for r in rows] + [1] * (n > 0), default=1)
    if T == 1 and B:  # one step per stream (the common case): the step kernel
        y, h = forward_block(model, _one_step_block(model, rows, block), device, buckets, staging)
        return y[:, None], h
    P = bucket_size(B, buckets)  # rows the device sees
    F, S = model.input_size, model.state_size
    x = np.zeros((P, T, F), dtype=np.float32)
    dt = np.zeros((P, T), dtype=np.float32)
    mask = np.zeros((P, T), dtype=bool)
    reset = np.zeros((P, T), dtype=bool)
    for b, r in enumerate(rows):
        k = len(r.dt)
        x[b, :k] = r.x
        dt[b, :k] = np.asarray(r.dt, dtype=np.float64)  # rounded to float32 here, once
        mask[b, :k] = True
        reset[b, :k] = r.fresh
    resumed = [b for b, r in enumerate(rows) if r.h0 is not None]
    states = []
    if resumed:
        raw = b"".join(rows[b].h0 or b"" for b in resumed)
        states.append(np.frombuffer(raw, dtype="<f4").reshape(len(resumed), S))
    if block is not None and n:
        x[R:B, 0] = block.x
        dt[R:B, 0] = block.dt  # float64 seconds rounded to float32 here, once
        mask[R:B, 0] = True
        reset[R:B, 0] = block.fresh
        from_block = np.flatnonzero(block.resumed)
        if len(from_block):
            resumed.extend((from_block + R).tolist())
            states.append(block.h0[from_block])
    stored = None if not states else states[0] if len(states) == 1 else np.concatenate(states)
    return forward_arrays(model, B, x, dt, mask, reset, stored, resumed, device, staging)


def _one_step_block(model: ServableModel, rows: list[Row], block: StepBlock | None) -> StepBlock:
    """``rows`` (one step each) as a :class:`StepBlock`, followed by ``block``'s streams."""
    if not rows:
        assert block is not None
        return block
    S = model.state_size
    own = StepBlock(
        x=np.array([r.x[0] for r in rows], dtype=np.float32).reshape(len(rows), -1),
        dt=np.array([r.dt[0] for r in rows], dtype=np.float64),
        fresh=np.array([r.fresh[0] for r in rows], dtype=bool),
        resumed=np.array([r.h0 is not None for r in rows], dtype=bool),
        h0=np.frombuffer(b"".join(r.h0 or bytes(4 * S) for r in rows), dtype="<f4").reshape(
            len(rows), S
        ),
    )
    if block is None or not len(block.dt):
        return own
    fields = ("x", "dt", "fresh", "resumed", "h0")
    return StepBlock(*(np.concatenate([getattr(own, f), getattr(block, f)]) for f in fields))


def _to_host(
    model: ServableModel, y: torch.Tensor, h: torch.Tensor, B: int
) -> tuple[np.ndarray, np.ndarray]:
    """The first ``B`` rows of a model call's outputs, presented, and states as ``<f4``."""
    y_np = model.present(y)[:B].detach().to("cpu").numpy()
    h_np = h[:B].detach().to("cpu", torch.float32).numpy().astype("<f4", copy=False)
    return y_np, np.ascontiguousarray(h_np)


def forward_block(
    model: ServableModel,
    block: StepBlock,
    device: torch.device,
    buckets: Sequence[int] = (),
    staging: HostStaging | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One ``model.step`` for the streams of ``block`` alone (the lane's batches): the arrays go
    to the device as they are, without the ``[B, T, F]`` padding of :func:`forward_rows` (at a
    small batch its set-up cost as much as the step). Returns ``(y[B,O] presented, h[B,S]
    <f4)``; same numbers as :func:`forward_rows` (tested)."""
    B = len(block.dt)
    P = bucket_size(B, buckets)
    x = np.ascontiguousarray(block.x, dtype=np.float32)
    dt = block.dt.astype(np.float32)  # float64 seconds rounded to float32 here, once
    h = np.ascontiguousarray(block.h0, dtype=np.float32)
    keep = block.resumed & ~block.fresh  # rows that continue their stored state
    if P > B:  # padding rows: zero input, Δt 0, from init_state; cut from the answer
        pad = P - B
        x = np.concatenate([x, np.zeros((pad, x.shape[1]), dtype=np.float32)])
        dt = np.concatenate([dt, np.zeros(pad, dtype=np.float32)])
        h = np.concatenate([h, np.zeros((pad, h.shape[1]), dtype=np.float32)])
        keep = np.concatenate([keep, np.zeros(pad, dtype=bool)])
    stage = staging if staging is not None else HostStaging(device)
    # Every array is staged at the bucket's shape (bounded pinned buffers, graph-friendly).
    h0 = stage.to_device("h0", h)
    if not keep.all():
        init = model.init_state(P, device=device)
        rows = stage.to_device("keep", keep)[:, None]
        h0 = torch.where(rows, h0.to(init.dtype), init) if keep.any() else init
    y, hT = model.step(stage.to_device("x", x), stage.to_device("dt", dt), h0)
    return _to_host(model, y, hT, B)


def forward_arrays(
    model: ServableModel,
    B: int,
    x: np.ndarray,
    dt: np.ndarray,
    mask: np.ndarray,
    reset: np.ndarray,
    stored: np.ndarray | None,
    resumed: Sequence[int] | np.ndarray,
    device: torch.device,
    staging: HostStaging | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The model call itself: ``x[P,T,F]``, ``dt[P,T]`` float32, ``mask`` and ``reset``
    ``[P,T]`` for ``P >= B`` rows (the first ``B`` answered); ``stored[k,S]``: the states of
    rows ``resumed``, the others start from ``init_state``."""
    P = x.shape[0]
    stage = staging if staging is not None else HostStaging(device)
    h_stored = None if stored is None else stage.to_device("h0", stored)
    if h_stored is not None and len(resumed) == P:
        h0 = h_stored
    else:
        h0 = model.init_state(P, device=device).clone()
        if h_stored is not None:
            idx = torch.as_tensor(np.asarray(resumed), dtype=torch.long).to(device)
            h0[idx] = h_stored.to(h0.dtype)
    y, hT = model.forward(
        stage.to_device("x", x),
        stage.to_device("dt", dt),
        h0=h0,
        mask=None if mask.all() else stage.to_device("mask", mask),
        reset=stage.to_device("reset", reset) if reset.any() else None,
    )
    return _to_host(model, y, hT, B)


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
    """The engine's device and its single worker thread. Model calls run one at a time, on the
    worker or, small ones on a CPU, inline (see :meth:`_runs_inline`); after :meth:`close` a
    call raises :class:`EngineStopped`."""

    def __init__(
        self,
        device: str,
        metrics: Metrics,
        buckets: Sequence[int] | None = None,
        max_batch: int = 1024,
        inline_steps: int = 0,
    ) -> None:
        """``buckets``: padded batch sizes (``None``: the device's default for batches of up to
        ``max_batch``, see :func:`default_buckets`; ``()``: none). ``inline_steps``: CPU calls
        of at most this many steps run on the caller's thread (0: every call on the worker)."""
        self.device = resolve_device(device)
        self.buckets = (
            default_buckets(self.device, max_batch) if buckets is None else check_buckets(buckets)
        )
        self._staging = HostStaging(self.device)
        self._metrics = metrics
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="liquid-engine")
        self._closed = False
        self.inline_steps = inline_steps
        self._worker_calls = 0  # calls submitted to the worker and not yet returned

    async def _call(self, fn: Callable[..., R], *args: object) -> R:
        loop = asyncio.get_running_loop()
        self._worker_calls += 1
        try:
            return await loop.run_in_executor(self._executor, fn, *args)
        except RuntimeError as exc:
            if self._closed:
                raise EngineStopped("the engine is stopped") from exc
            raise
        finally:
            self._worker_calls -= 1

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
        if self._runs_inline(calls):
            return self._forward_all(calls)
        return await self._call(self._forward_all, calls)

    def _runs_inline(self, calls: list[ModelCall]) -> bool:
        """A CPU call of at most ``inline_steps`` steps runs on the calling (event loop) thread
        when the worker is idle. On the worker, torch releases the GIL around every operator
        and takes it back behind the busy event loop (up to the 5 ms switch interval each
        time): a 60 µs step took milliseconds under load. Never beside a worker call (one
        model call at a time)."""
        if self.device.type != "cpu" or self._worker_calls or self.inline_steps <= 0:
            return False
        steps = 0
        for _, rows, block in calls:
            steps += sum(len(r.dt) for r in rows) + (0 if block is None else len(block.dt))
        return steps <= self.inline_steps

    def _forward_all(self, calls: list[ModelCall]) -> list[tuple[np.ndarray, np.ndarray]]:
        t0 = time.perf_counter()
        out = []
        with torch.inference_mode():
            for model, rows, block in calls:
                out.append(
                    forward_rows(model, rows, self.device, self.buckets, self._staging, block)
                )
        spent = time.perf_counter() - t0
        self._metrics.batch_compute.observe(spent)
        self._metrics.stages["model"].observe(spent)
        return out

    async def predict_one(self, model: ServableModel, h: bytes, x: bytes, dt: float) -> list[float]:
        """:func:`predict_one` on the worker thread."""
        return await self._call(predict_one, model, h, x, dt, self.device)

    def close(self) -> None:
        """Run nothing more (a running call finishes)."""
        self._closed = True
        self._executor.shutdown(wait=False)
