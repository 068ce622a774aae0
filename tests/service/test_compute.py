"""The device call (service.engine.compute): one-step batches take the model's step kernel and
answer as the sequence path does; small CPU calls run on the caller's thread, never beside a
call on the worker thread."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import numpy as np
import pytest
import torch

from liquidcore.numerics import replay_mismatch
from service.engine.compute import (
    DeviceExecutor,
    ModelCall,
    Row,
    StepBlock,
    forward_rows,
)
from service.engine.staging import HostStaging
from service.metrics import Metrics
from tests.model_factory import INPUTS, make_model

CPU = torch.device("cpu")
pytestmark = pytest.mark.anyio


def _one_step_rows(rng: np.random.Generator, B: int, S: int) -> tuple[list[Row], Any]:
    """``B`` streams of one step each, as rows, and as the tensors ``model.forward`` takes
    ``(x[B,1,F], dt[B,1], reset[B,1], h0 rows with a stored state, their states)``: every
    third stream starts from init_state, every fourth restarts though it has a stored state."""
    x = rng.normal(size=(B, 1, INPUTS)).astype(np.float32)
    dt = rng.uniform(0.01, 3.0, size=(B, 1)).astype(np.float32)
    reset = np.zeros((B, 1), dtype=bool)
    reset[::4, 0] = True
    resumed = np.array([b for b in range(B) if b % 3], dtype=np.int64)
    stored = rng.normal(size=(len(resumed), S)).astype(np.float32)
    states = dict(zip(resumed.tolist(), stored, strict=True))
    rows = [
        Row.of(
            states[b].tobytes() if b in states else None,
            [x[b, 0].tolist()],
            [float(dt[b, 0])],
            [bool(reset[b, 0])],
        )
        for b in range(B)
    ]
    return rows, (x, dt, reset, resumed, stored)


@pytest.mark.parametrize("kind", ["cfc", "ltc"])
def test_a_one_step_batch_answers_as_the_sequence_path(kind: str) -> None:
    model = make_model(kind)
    B, S = 13, model.state_size
    rows, (x, dt, reset, resumed, stored) = _one_step_rows(np.random.default_rng(1), B, S)
    with torch.inference_mode():
        y, h = forward_rows(model, rows, CPU)
        h0 = model.init_state(B).clone()
        h0[torch.as_tensor(resumed)] = torch.from_numpy(stored)
        want_y, want_h = model.forward(
            torch.from_numpy(x), torch.from_numpy(dt), h0=h0, reset=torch.from_numpy(reset)
        )
        want_y = model.present(want_y)
    assert y.shape == (B, 1, model.output_size)
    assert h.shape == (B, S)
    for got, want in ((y, want_y.numpy()), (h, want_h.numpy())):
        problem = replay_mismatch(got, want, 1)
        assert problem is None, problem


def test_a_one_step_batch_whose_every_stored_row_restarts_starts_all_from_init() -> None:
    model = make_model("cfc")
    B, S = 4, model.state_size
    rng = np.random.default_rng(2)
    x = rng.normal(size=(B, INPUTS)).astype(np.float32)
    dt = np.full(B, 0.5, dtype=np.float32)
    stored = np.full(S, 1e3, dtype=np.float32).tobytes()
    # rows 0 and 2 have stored states and restart: their stored states must not be used
    rows = [
        Row.of(stored if b % 2 == 0 else None, [x[b].tolist()], [0.5], [b % 2 == 0])
        for b in range(B)
    ]
    with torch.inference_mode():
        _, h = forward_rows(model, rows, CPU)
        h0 = model.init_state(B)
        _, want = model.step(torch.from_numpy(x), torch.from_numpy(dt), h0)
    np.testing.assert_allclose(h, want.numpy(), rtol=1e-6, atol=1e-6)


def _calls(model: Any, steps: int) -> list[ModelCall]:
    rng = np.random.default_rng(3)
    block = StepBlock(
        x=rng.normal(size=(steps, INPUTS)).astype(np.float32),
        dt=np.full(steps, 0.25),
        fresh=np.ones(steps, dtype=bool),
        resumed=np.zeros(steps, dtype=bool),
        h0=np.zeros((steps, model.state_size), dtype=np.float32),
    )
    return [(model, [], block)]


class _ThreadOfStep:
    """Wraps a model and records the thread of each ``step``/``forward`` call."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.threads: list[str] = []
        self.release = threading.Event()
        self.release.set()
        self.started = threading.Event()  # set by a call that waits for release

    def __getattr__(self, name: str) -> object:
        return getattr(self.model, name)

    def step(self, *args: object) -> object:
        self.threads.append(threading.current_thread().name)
        if not self.release.is_set():
            self.started.set()
        self.release.wait(10)
        return self.model.step(*args)  # type: ignore[operator]


async def test_small_cpu_calls_run_inline_others_and_those_beside_a_worker_call_do_not() -> None:
    model = _ThreadOfStep(make_model("cfc"))
    executor = DeviceExecutor("cpu", Metrics(), inline_steps=8)
    main = threading.current_thread().name
    try:
        await executor.forward(_calls(model, 8))
        assert model.threads == [main]
        await executor.forward(_calls(model, 9))
        assert model.threads[-1].startswith("liquid-engine")
        # A call on the worker is in flight: the next small call queues behind it.
        model.release.clear()
        big = asyncio.create_task(executor.forward(_calls(model, 9)))
        await asyncio.to_thread(model.started.wait, 10)
        small = asyncio.create_task(executor.forward(_calls(model, 1)))
        await asyncio.sleep(0.05)
        assert len(model.threads) == 3  # the small call has not run beside the big one
        model.release.set()
        await asyncio.gather(big, small)
        assert model.threads[3].startswith("liquid-engine")
    finally:
        executor.close()


async def test_inline_steps_zero_keeps_every_call_on_the_worker() -> None:
    model = _ThreadOfStep(make_model("cfc"))
    executor = DeviceExecutor("cpu", Metrics(), inline_steps=0)
    try:
        await executor.forward(_calls(model, 1))
        assert model.threads[0].startswith("liquid-engine")
    finally:
        executor.close()


def test_settings_take_inline_steps_and_refuse_negative() -> None:
    from pydantic import ValidationError

    from service.app import engine_config
    from service.settings import Settings

    assert engine_config(Settings()).inline_steps == 4096
    assert engine_config(Settings(inline_steps=0)).inline_steps == 0
    with pytest.raises(ValidationError, match="inline_steps"):
        Settings(inline_steps=-1)
    from service.engine.config import EngineConfig

    with pytest.raises(ValueError, match="inline_steps must be >= 0"):
        EngineConfig(inline_steps=-1)


@pytest.mark.parametrize("kind", ["cfc", "ltc"])
@pytest.mark.parametrize("buckets", [(), (16,)])
@pytest.mark.parametrize("as_rows", [0, 5])
def test_a_block_answers_as_the_same_streams_given_as_rows(
    kind: str, buckets: tuple[int, ...], as_rows: int
) -> None:
    """The lane's block (alone, or after ``as_rows`` streams given as rows) against the
    per-stream rows of the same steps."""
    model = make_model(kind)
    B, S = 11, model.state_size
    rng = np.random.default_rng(4)
    block = StepBlock(
        x=rng.normal(size=(B, INPUTS)).astype(np.float32),
        dt=rng.uniform(0.01, 3.0, size=B),
        fresh=np.arange(B) % 4 == 0,
        resumed=np.arange(B) % 3 != 0,
        h0=rng.normal(size=(B, S)).astype(np.float32),
    )
    rows = [
        Row.of(
            block.h0[b].tobytes() if block.resumed[b] else None,
            [block.x[b].tolist()],
            [float(block.dt[b])],
            [bool(block.fresh[b])],
        )
        for b in range(B)
    ]
    with torch.inference_mode():
        rest = StepBlock(
            block.x[as_rows:], block.dt[as_rows:], block.fresh[as_rows:],
            block.resumed[as_rows:], block.h0[as_rows:],
        )  # fmt: skip
        y, h = forward_rows(model, rows[:as_rows], CPU, buckets, HostStaging(CPU), rest)
        want_y, want_h = forward_rows(model, rows, CPU)
    assert y.shape == want_y.shape
    assert h.shape == want_h.shape
    for got, want in ((y, want_y), (h, want_h)):
        problem = replay_mismatch(got, want, 1)
        assert problem is None, problem
