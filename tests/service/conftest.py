"""Fixtures of the service's core tests: the anyio backend, a tiny reference model, metrics,
and state stores of both kinds (the Redis one on the harness's private server)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import torch
from torch import Tensor

from service.metrics import Metrics
from service.store import MemoryStore, StateStore
from service.store import make_store as store_for_url


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class LeakyModel:
    """A small nonlinear leaky integrator implementing the engine's ``ServableModel``.

    ``h' = exp(-Δt / time_unit) * h + 0.5 * tanh(W x + U h + b)``, ``y = V h' + c``. It is
    nonlinear in ``h`` so that the order of events matters, and ``forward`` is ``step`` in a
    loop (honouring ``mask`` and ``reset``), so the engine's sequence calls can be compared
    bit for bit with stepping offline. ``calls`` records the shape of every batched call:
    ``(B, T)`` for ``forward``, ``(B, 1)`` for ``step`` (the engine steps one-event batches).
    """

    def __init__(
        self,
        *,
        name: str = "leaky",
        version: str = "v1",
        input_size: int = 2,
        state_size: int = 3,
        output_size: int = 2,
        time_unit: float = 1.0,
        default_dt: float = 0.5,
        seed: int = 0,
        classification: bool = False,
    ) -> None:
        g = torch.Generator().manual_seed(seed)
        self.name = name
        self.version = version
        self.input_size = input_size
        self.state_size = state_size
        self.output_size = output_size
        self.time_unit = time_unit
        self.default_dt = default_dt
        self.feature_names: list[str] | None = [f"f{i}" for i in range(input_size)]
        self.output_names: list[str] | None = [f"y{i}" for i in range(output_size)]
        self.classification = classification
        self.W = torch.randn(state_size, input_size, generator=g)
        self.U = torch.randn(state_size, state_size, generator=g) * 0.5
        self.b = torch.randn(state_size, generator=g) * 0.1
        self.V = torch.randn(output_size, state_size, generator=g)
        self.c = torch.randn(output_size, generator=g) * 0.1
        self.h_init = torch.linspace(-0.2, 0.3, state_size)
        self.calls: list[tuple[int, ...]] = []

    def init_state(self, n: int, device: torch.device | str | None = None) -> Tensor:
        return self.h_init.to(device).expand(n, self.state_size).clone()

    def step(self, x: Tensor, dt: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        self.calls.append((x.shape[0], 1))
        return self._step(x, dt, h)

    def _step(self, x: Tensor, dt: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        dt64 = torch.as_tensor(dt, dtype=torch.float64, device=h.device).reshape(-1, 1)
        decay = torch.exp(-dt64 / self.time_unit).to(torch.float32)
        pre = x @ self.W.to(h.device).T + h @ self.U.to(h.device).T + self.b.to(h.device)
        h_new = decay * h + 0.5 * torch.tanh(pre)
        return h_new @ self.V.to(h.device).T + self.c.to(h.device), h_new

    def forward(
        self,
        x: Tensor,
        dt: Tensor,
        h0: Tensor | None = None,
        mask: Tensor | None = None,
        reset: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        B, T = x.shape[0], x.shape[1]
        self.calls.append((B, T))
        h = self.init_state(B, x.device) if h0 is None else h0
        fresh = self.init_state(B, x.device)
        ys = []
        for t in range(T):
            if reset is not None:
                h = torch.where(reset[:, t : t + 1], fresh, h)
            y, h_new = self._step(x[:, t], dt[:, t], h)
            if mask is not None:
                keep = mask[:, t : t + 1]
                h_new = torch.where(keep, h_new, h)
            h = h_new
            ys.append(y)
        return torch.stack(ys, dim=1), h

    def advance(self, h: Tensor, dt: Tensor, x_hold: Tensor) -> Tensor:
        return self._step(x_hold, dt, h)[1]

    def present(self, y: Tensor) -> Tensor:
        return torch.softmax(y, dim=-1) if self.classification else y


@pytest.fixture
def leaky() -> Callable[..., LeakyModel]:
    """Factory of :class:`LeakyModel` (keyword arguments as its constructor)."""
    return LeakyModel


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


@pytest.fixture
def metric() -> Callable[..., float]:
    """``metric(metrics, "liquid_events_total", outcome="applied") -> value`` (0 if absent)."""
    return sample


@pytest.fixture(
    params=[
        "memory",
        pytest.param("redis", marks=pytest.mark.integration),
        pytest.param("cluster", marks=pytest.mark.integration),
    ]
)
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_url(request: pytest.FixtureRequest, store_kind: str) -> str | None:
    """The Redis URL for the ``redis`` kind and the ``redis+cluster`` URL of the harness's
    6-node cluster for ``cluster`` (flushed), ``None`` for ``memory``."""
    if store_kind == "memory":
        return None
    return str(
        request.getfixturevalue("redis_url" if store_kind == "redis" else "redis_cluster_url")
    )


@pytest.fixture
async def make_store(
    anyio_backend: str, store_url: str | None
) -> AsyncIterator[Callable[[], StateStore]]:
    """Factory of stores that share one backing: every call on the ``redis`` and ``cluster``
    kinds is a new client of the same server(s); on ``memory`` it is the same in-process store."""
    made: list[Any] = []
    shared = MemoryStore()

    def make() -> StateStore:
        s: StateStore = store_for_url(store_url) if store_url else shared
        made.append(s)
        return s

    yield make
    for s in made:
        await s.close()


@pytest.fixture
async def store(make_store: Callable[[], StateStore]) -> StateStore:
    return make_store()
