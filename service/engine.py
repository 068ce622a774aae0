"""The engine: stream semantics, one batched model call per batch on a worker thread, and
compare-and-set write-back.

Interface changes against the brief: none. Additions: ``EngineConfig.expiry_grace_s``,
``max_queue`` and ``publish_live``; ``StreamInfo.stream_id``; ``StateSnapshot.recent``,
``model``, ``created`` and ``updated``; exceptions ``InvalidEvent``, ``EngineStopped``,
``StateConflict`` and ``StateUnreadable``; ``Engine.models``, ``Engine.running``,
``Engine.active_stream_count()``, ``prediction_message``. ``ServableModel.version`` is typed
``str | None`` (as ``LiquidModel`` has it); the engine refuses a model without one.

Decisions: ``predict_at`` runs ``model.step(x_last, Δt, h)`` (the input held over Δt, which is
``advance`` plus the readout, and gives the output). Only newly applied predictions are
published live (a duplicate or a rejection is not a new prediction). Duplicates are found by
event id alone, before the order check. ``submit`` raises the first engine error of its events
(``StateConflict``, ``StateUnreadable``, a store error) after all of them are settled.

One batch (:meth:`Engine._process`), as DESIGN §2 draws it::

    batcher --(up to max_batch events / max_delay_s)--> group by stream
      -> load every stream's record (one pipelined round trip)
      -> plan each stream (service.stream_semantics: duplicates, order, gaps, expiry, restarts)
      -> one model.forward per served model over all its streams (padded with mask, resets
         mid-sequence via reset), in torch.inference_mode on the engine's single worker thread
      -> compare-and-set every changed record (one pipelined round trip)
      -> resolve the waiting futures of the streams that committed; reload and recompute only
         the streams that lost a CAS race (counted in liquid_state_conflicts_total)
      -> publish the new predictions to the streams' live channels (a background task)

Numerics: timestamps are float64 seconds; Δt is their float64 difference, handed to the model
as float32 seconds (the model divides by its time unit). States are stored as the exact
float32 bytes the model returned, so serving equals ``model.step`` run offline on the same
events.

Expiry: a record not written for ``state_ttl_s`` is expired: reads treat it as absent and the
next event restarts the stream with ``reset="expired"``. The store keeps it for
``expiry_grace_s`` more (its TTL is the sum) so that this can be reported; after that the key
is gone and the next event is a ``"first_event"``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor

from service.batcher import Batcher, BatcherClosed, Pending, group_by_stream
from service.codec import (
    CodecError,
    RecentEntry,
    StreamRecord,
    decode_record,
    encode_record,
    floats_to_f32,
)
from service.keys import live_channel, state_key
from service.live import LiveBus
from service.metrics import Metrics
from service.store.base import CasWrite, StateStore, Versioned
from service.stream_semantics import (
    RESET_REASONS,
    Duplicate,
    Incoming,
    OutOfOrder,
    Plan,
    Policy,
    Step,
    build_record,
    is_live,
    plan_stream,
)

log = logging.getLogger(__name__)

PUBLISH_DRAIN_TIMEOUT_S = 5.0

__all__ = [
    "Engine",
    "EngineConfig",
    "EngineError",
    "EngineStopped",
    "Event",
    "EventResult",
    "InvalidEvent",
    "InvalidState",
    "InvalidTime",
    "Prediction",
    "RecentEntry",
    "Rejection",
    "ServableModel",
    "StateConflict",
    "StateSnapshot",
    "StateUnreadable",
    "StreamInfo",
    "StreamNotFound",
    "UnknownModel",
    "prediction_message",
]


# --- the model the engine serves ------------------------------------------------------------


@runtime_checkable
class ServableModel(Protocol):
    """What the engine needs of a model (``liquidcore.LiquidModel`` is one). Δt in seconds."""

    @property
    def name(self) -> str: ...
    @property
    def version(self) -> str | None: ...  # content hash; the engine refuses a model without
    @property
    def input_size(self) -> int: ...
    @property
    def output_size(self) -> int: ...
    @property
    def state_size(self) -> int: ...
    @property
    def feature_names(self) -> list[str] | None: ...
    @property
    def output_names(self) -> list[str] | None: ...
    @property
    def time_unit(self) -> float: ...
    @property
    def default_dt(self) -> float: ...

    def init_state(self, n: int, device: torch.device | str | None = None) -> Tensor: ...

    def step(self, x: Tensor, dt: Tensor, h: Tensor) -> tuple[Tensor, Tensor]: ...

    def forward(
        self,
        x: Tensor,
        dt: Tensor,
        h0: Tensor | None = None,
        mask: Tensor | None = None,
        reset: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]: ...

    def advance(self, h: Tensor, dt: Tensor, x_hold: Tensor) -> Tensor: ...

    def present(self, y: Tensor) -> Tensor: ...


# --- values in and out ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Event:
    """One validated event: ``x`` has ``input_size`` finite values in model feature order."""

    stream_id: str
    t: float  # seconds since the epoch (float64)
    x: tuple[float, ...]
    event_id: str | None = None
    received_at: float = field(default_factory=time.time)


@dataclass(frozen=True, slots=True)
class Prediction:
    stream_id: str
    t: float
    dt: float  # seconds applied
    y: tuple[float, ...]  # presented outputs (model.present)
    model: str
    version: str
    duplicate: bool
    reset: str | None  # None | "first_event" | "gap" | "model_change" | "expired"
    event_id: str | None
    count: int  # events applied to the stream so far


@dataclass(frozen=True, slots=True)
class Rejection:
    stream_id: str
    code: str  # "out_of_order"
    message: str
    last_t: float
    event_id: str | None


EventResult = Prediction | Rejection


@dataclass(frozen=True, slots=True)
class StreamInfo:
    stream_id: str
    model: str
    version: str
    last_t: float
    count: int
    created: float
    updated: float
    expires_at: float


@dataclass(frozen=True, slots=True)
class StateSnapshot:
    """A stream's state, for export and import. ``h`` and ``x_last`` are the float32 values as
    Python floats (exact). Import keeps the dedupe window only from ``recent`` (ids with their
    predictions); ``recent_ids`` alone cannot answer a duplicate and is informational."""

    h: tuple[float, ...]
    x_last: tuple[float, ...]
    last_t: float
    count: int
    version: str
    recent_ids: tuple[str, ...] = ()
    recent: tuple[RecentEntry, ...] = ()
    model: str | None = None
    created: float | None = None
    updated: float | None = None


@dataclass(frozen=True, slots=True)
class EngineConfig:
    max_batch: int = 1024
    max_delay_s: float = 0.002
    state_ttl_s: float = 86400.0
    max_gap_s: float = 3600.0
    first_event_dt_s: float | None = None  # None -> model.default_dt
    dedupe_window: int = 32
    device: str = "cpu"
    max_cas_retries: int = 16
    active_window_s: float = 300.0
    expiry_grace_s: float = 3600.0  # an expired record is kept this long to report "expired"
    max_queue: int = 65536  # events waiting; submit waits while the queue is full
    publish_live: bool = True

    def __post_init__(self) -> None:
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise ValueError(message)

        need(self.max_batch >= 1, f"max_batch must be greater than 0; got {self.max_batch}")
        need(self.max_delay_s >= 0, f"max_delay_s must be >= 0; got {self.max_delay_s}")
        need(self.state_ttl_s > 0, f"state_ttl_s must be > 0 seconds; got {self.state_ttl_s}")
        need(
            self.max_gap_s > 0, f"max_gap_s must be > 0 seconds (inf: never); got {self.max_gap_s}"
        )
        need(
            self.first_event_dt_s is None
            or (math.isfinite(self.first_event_dt_s) and self.first_event_dt_s >= 0),
            f"first_event_dt_s must be None or finite and >= 0; got {self.first_event_dt_s}",
        )
        need(self.dedupe_window >= 0, f"dedupe_window must be >= 0; got {self.dedupe_window}")
        need(self.max_cas_retries >= 0, f"max_cas_retries must be >= 0; got {self.max_cas_retries}")
        need(self.active_window_s > 0, f"active_window_s must be > 0; got {self.active_window_s}")
        need(
            math.isfinite(self.expiry_grace_s) and self.expiry_grace_s >= 0,
            f"expiry_grace_s must be finite and >= 0; got {self.expiry_grace_s}",
        )
        need(
            self.max_queue >= self.max_batch,
            f"max_queue must be >= max_batch ({self.max_batch}); got {self.max_queue}",
        )
        need(bool(self.device), "device must be 'cpu', 'cuda', 'cuda:N' or 'auto'")

    @property
    def store_ttl_s(self) -> float:
        """The TTL a write gives the key: the logical TTL plus the grace to report expiry."""
        return self.state_ttl_s + self.expiry_grace_s


# --- errors (the API maps them to HTTP status codes) -----------------------------------------
# The names are the interface the API codes against (StreamNotFound, not StreamNotFoundError).


class EngineError(Exception):
    """Base class of the engine's errors."""


class UnknownModel(EngineError, LookupError):  # noqa: N818
    """No served model has this name (404)."""


class StreamNotFound(EngineError, LookupError):  # noqa: N818
    """No live state for this stream (absent, deleted or expired) (404)."""


class InvalidTime(EngineError, ValueError):  # noqa: N818
    """A time that the request cannot use, e.g. before the stream's last event (422)."""


class InvalidState(EngineError, ValueError):  # noqa: N818
    """A state that does not fit the served model (size, non-finite values, version) (409/422)."""


class InvalidEvent(EngineError, ValueError):  # noqa: N818
    """An event the API should have rejected (wrong size, non-finite values) (422)."""


class EngineStopped(EngineError, RuntimeError):  # noqa: N818
    """The engine is not running (not started, or stopping) (503)."""


class StateConflict(EngineError, RuntimeError):  # noqa: N818
    """A stream's state kept changing under this writer beyond ``max_cas_retries`` (503)."""


class StateUnreadable(EngineError, RuntimeError):  # noqa: N818
    """The stored record cannot be decoded (written by a newer format, or corrupt) (500).
    Nothing is overwritten; deleting the stream clears it."""


# --- live messages ----------------------------------------------------------------------------


def prediction_message(
    pred: Prediction, x: Sequence[float] | None = None, output_names: Sequence[str] | None = None
) -> str:
    """The JSON published on a stream's live channel for ``pred``.

    Keys: ``stream_id, t, dt, outputs, model, version, duplicate, reset, event_id, count, x``;
    ``outputs`` is an object ``{name: value}`` when the model names its outputs, else a list.
    """
    outputs: Any = dict(zip(output_names, pred.y, strict=True)) if output_names else list(pred.y)
    return json.dumps(
        {
            "stream_id": pred.stream_id,
            "t": pred.t,
            "dt": pred.dt,
            "outputs": outputs,
            "model": pred.model,
            "version": pred.version,
            "duplicate": pred.duplicate,
            "reset": pred.reset,
            "event_id": pred.event_id,
            "count": pred.count,
            "x": list(x) if x is not None else None,
        },
        separators=(",", ":"),
    )


# --- internals --------------------------------------------------------------------------------


@dataclass(eq=False, slots=True)
class _Job:
    tenant: str
    model_name: str
    event: Event
    stream_key: str


@dataclass(eq=False, slots=True)
class _Work:
    """One stream's share of a batch attempt."""

    key: str
    pending: list[Pending[_Job]]
    model_name: str
    record: StreamRecord | None
    version: int  # store version loaded (0: absent)
    plan: Plan
    incoming: list[Incoming]
    outputs: list[tuple[float, ...]] = field(default_factory=list)
    h: bytes = b""
    x: bytes = b""


@dataclass(slots=True)
class _Row:
    """One stream's input to a batched model call."""

    h0: bytes | None  # stored float32 state, or None: init_state
    x: np.ndarray  # [n, F] float32
    dt: np.ndarray  # [n] float32 seconds
    fresh: np.ndarray  # [n] bool: re-initialise before this step


def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


_F32_MAX = float(np.finfo(np.float32).max)


def _finite(values: Sequence[float]) -> bool:
    return all(math.isfinite(v) for v in values)


class Engine:
    """Serves ``models`` (name -> model) over ``store`` and ``live``. ``start`` before use and
    ``stop`` at shutdown (it drains the queue); the store and bus stay the caller's to close.
    ``clock``: wall-clock seconds (injectable for tests of expiry)."""

    def __init__(
        self,
        models: Mapping[str, ServableModel],
        store: StateStore,
        live: LiveBus,
        metrics: Metrics,
        config: EngineConfig,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not models:
            raise ValueError("an engine needs at least one model to serve")
        for name, m in models.items():
            if not m.version:
                raise ValueError(
                    f"model {name!r} has no version (content hash); load it with "
                    "liquidcore.checkpoint.load or set its version"
                )
        self._models = dict(models)
        self._store = store
        self._live = live
        self._metrics = metrics
        self.config = config
        self.device = _resolve_device(config.device)
        self._clock = clock
        self._policies = {name: self._policy(name, m) for name, m in self._models.items()}
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="liquid-engine")
        self._executor_closed = False
        self._batcher: Batcher[_Job] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._publisher: asyncio.Task[None] | None = None
        self._housekeeper: asyncio.Task[None] | None = None
        self._publish_queue: asyncio.Queue[list[tuple[str, str]] | None] | None = None
        self._active: OrderedDict[str, float] = OrderedDict()
        self._stopped = False

    def _policy(self, name: str, model: ServableModel) -> Policy:
        c = self.config
        first_dt = c.first_event_dt_s if c.first_event_dt_s is not None else model.default_dt
        return Policy(
            model=name,
            version=str(model.version),
            first_dt=float(first_dt),
            max_gap_s=c.max_gap_s,
            ttl_s=c.state_ttl_s,
            dedupe_window=c.dedupe_window,
        )

    @property
    def models(self) -> Mapping[str, ServableModel]:
        return self._models

    @property
    def running(self) -> bool:
        return self._worker is not None and not self._stopped

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        if self._stopped:
            raise EngineStopped("a stopped engine cannot be restarted; make a new one")
        if self._worker is not None:
            return
        for model in self._models.values():
            # nn.Modules are moved to the device and put in eval mode; other models are the
            # caller's to place.
            to = getattr(model, "to", None)
            if callable(to):
                await asyncio.get_running_loop().run_in_executor(self._executor, to, self.device)
            eval_ = getattr(model, "eval", None)
            if callable(eval_):
                eval_()
        self._batcher = Batcher(
            self.config.max_batch, self.config.max_delay_s, max_queue=self.config.max_queue
        )
        self._publish_queue = asyncio.Queue(maxsize=1024)
        loop = asyncio.get_running_loop()
        self._worker = loop.create_task(self._run(), name="liquid-engine-worker")
        self._publisher = loop.create_task(self._publish_loop(), name="liquid-engine-publisher")
        self._housekeeper = loop.create_task(self._housekeep(), name="liquid-engine-housekeeper")

    async def stop(self) -> None:
        """Accept nothing new, finish every queued event (commit and answer it), then stop."""
        if self._stopped:
            return
        self._stopped = True
        if self._batcher is not None:
            self._batcher.close()
        if self._worker is not None:
            await self._worker
        if self._housekeeper is not None:
            self._housekeeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._housekeeper
        if self._publisher is not None and self._publish_queue is not None:
            await self._publish_queue.put(None)
            try:  # live messages are best effort: an unresponsive bus must not block shutdown
                await asyncio.wait_for(self._publisher, PUBLISH_DRAIN_TIMEOUT_S)
            except asyncio.TimeoutError:
                log.warning("live messages still unpublished at shutdown were dropped")
        self._executor_closed = True
        self._executor.shutdown(wait=False)
        self._active.clear()
        self._metrics.active_streams.set(0)

    def _batcher_or_stop(self) -> Batcher[_Job]:
        if self._batcher is None or self._stopped:
            raise EngineStopped("the engine is not running")
        return self._batcher

    def _model(self, name: str) -> ServableModel:
        try:
            return self._models[name]
        except KeyError:
            raise UnknownModel(f"unknown model {name!r}; served: {sorted(self._models)}") from None

    # --- events -------------------------------------------------------------------------------

    async def submit(
        self, tenant: str, model_name: str, events: Sequence[Event]
    ) -> list[EventResult]:
        """Apply ``events`` (any streams; each stream's in the given order) and return one
        result per event, in order, once every state they changed is committed."""
        model = self._model(model_name)
        batcher = self._batcher_or_stop()
        jobs = []
        for ev in events:
            if len(ev.x) != model.input_size:
                raise InvalidEvent(
                    f"event has {len(ev.x)} features; model {model_name!r} takes {model.input_size}"
                )
            if not (math.isfinite(ev.t) and _finite(ev.x)):
                raise InvalidEvent("event time and features must be finite numbers")
            jobs.append(_Job(tenant, model_name, ev, state_key(tenant, model_name, ev.stream_id)))
        if not jobs:
            return []
        try:
            futures = await batcher.put_many(jobs)
        except BatcherClosed:
            raise EngineStopped("the engine is stopping") from None
        results = await asyncio.gather(*futures, return_exceptions=True)
        out: list[EventResult] = []
        for r in results:
            if isinstance(r, BaseException):
                raise r
            out.append(r)
        return out

    async def _run(self) -> None:
        assert self._batcher is not None
        while True:
            batch = await self._batcher.next_pending()
            if not batch:
                return  # closed and drained
            try:
                await self._process(batch)
            except Exception as exc:  # a store or model failure fails this batch, not the engine
                log.exception("batch of %d events failed", len(batch))
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(exc)

    async def _process(self, batch: list[Pending[_Job]]) -> None:
        m = self._metrics
        mono = time.monotonic()
        m.batch_size.observe(len(batch))
        for p in batch:
            m.queue_wait.observe(max(0.0, mono - p.enqueued_at))
            ev = p.item.event
            m.event_lag.observe(max(0.0, ev.received_at - ev.t))
        groups = group_by_stream(batch, key=lambda p: p.item.stream_key)
        self._touch_active(groups, mono)
        todo = groups
        for attempt in range(self.config.max_cas_retries + 1):
            loaded = await self._load(list(todo))
            todo = await self._attempt(todo, loaded)
            if not todo:
                return
            m.state_conflicts.inc(len(todo))
            log.debug("attempt %d: %d streams lost a CAS race; recomputing", attempt, len(todo))
        err = StateConflict(
            f"the state of {len(todo)} stream(s) changed concurrently "
            f"{self.config.max_cas_retries + 1} times; retry the request"
        )
        for pending in todo.values():
            for p in pending:
                if not p.future.done():
                    p.future.set_exception(err)

    async def _attempt(
        self, groups: dict[str, list[Pending[_Job]]], loaded: list[Versioned | None]
    ) -> dict[str, list[Pending[_Job]]]:
        """Plan, compute and commit ``groups``; return the groups that lost a CAS race."""
        now = self._clock()
        works: list[_Work] = []
        for (key, pending), stored in zip(groups.items(), loaded, strict=True):
            model_name = pending[0].item.model_name
            record = None
            if stored is not None:
                try:
                    record = decode_record(stored.payload)
                except CodecError as exc:
                    err = StateUnreadable(f"stored state of stream is unreadable: {exc}")
                    for p in pending:
                        if not p.future.done():
                            p.future.set_exception(err)
                    continue
            incoming = [Incoming(p.item.event.t, p.item.event.event_id) for p in pending]
            plan = plan_stream(record, incoming, self._policies[model_name], now)
            works.append(
                _Work(
                    key,
                    pending,
                    model_name,
                    record,
                    stored.version if stored else 0,
                    plan,
                    incoming,
                )
            )
        writing = [w for w in works if w.plan.writes]
        if writing:
            await self._compute(writing)
        writes = []
        for w in writing:
            new = build_record(
                w.plan, self._policies[w.model_name], w.incoming, w.outputs, w.h, w.x, now
            )
            writes.append(CasWrite(w.key, w.version, encode_record(new), self.config.store_ttl_s))
        won = await self._save(writes)
        lost: dict[str, list[Pending[_Job]]] = {}
        committed: list[_Work] = []
        for w, ok in zip(writing, won, strict=True):
            if ok:
                committed.append(w)
            else:
                lost[w.key] = w.pending
        committed.extend(w for w in works if not w.plan.writes)
        messages: list[tuple[str, str]] = []
        for w in committed:
            self._resolve(w, messages)
        if messages:
            self._enqueue_publish(messages)
        return lost

    def _resolve(self, w: _Work, messages: list[tuple[str, str]]) -> None:
        """Answer a committed stream's events, count them, and queue its live messages."""
        m = self._metrics
        model = self._models[w.model_name]
        version = self._policies[w.model_name].version
        by_index: dict[int, Prediction] = {}
        step_no = 0
        for outcome in w.plan.outcomes:
            job = w.pending[outcome.index].item
            ev = job.event
            result: EventResult
            if isinstance(outcome, Step):
                result = Prediction(
                    stream_id=ev.stream_id,
                    t=ev.t,
                    dt=outcome.dt,
                    y=w.outputs[step_no],
                    model=w.model_name,
                    version=version,
                    duplicate=False,
                    reset=outcome.reset,
                    event_id=ev.event_id,
                    count=outcome.count,
                )
                step_no += 1
                by_index[outcome.index] = result
                m.event_dt.observe(outcome.dt)
                if outcome.reset in RESET_REASONS:
                    m.events.labels(outcome="reset").inc()
                    m.stream_resets.labels(reason=outcome.reset).inc()
                else:
                    m.events.labels(outcome="applied").inc()
                if self.config.publish_live:
                    messages.append(
                        (
                            live_channel(job.tenant, ev.stream_id),
                            prediction_message(result, ev.x, model.output_names),
                        )
                    )
            elif isinstance(outcome, Duplicate):
                if outcome.original is not None:
                    o = outcome.original
                    result = Prediction(
                        stream_id=ev.stream_id,
                        t=o.t,
                        dt=o.dt,
                        y=o.y,
                        model=w.model_name,
                        version=version,
                        duplicate=True,
                        reset=o.reset,
                        event_id=ev.event_id,
                        count=o.count,
                    )
                else:
                    assert outcome.of_index is not None
                    first = by_index[outcome.of_index]
                    result = Prediction(
                        stream_id=first.stream_id,
                        t=first.t,
                        dt=first.dt,
                        y=first.y,
                        model=first.model,
                        version=first.version,
                        duplicate=True,
                        reset=first.reset,
                        event_id=ev.event_id,
                        count=first.count,
                    )
                m.events.labels(outcome="duplicate").inc()
            else:
                assert isinstance(outcome, OutOfOrder)
                result = Rejection(
                    stream_id=ev.stream_id,
                    code="out_of_order",
                    message=(
                        f"event time {ev.t!r} is before the stream's last applied event time "
                        f"{outcome.last_t!r}; events of a stream must be sent in time order"
                    ),
                    last_t=outcome.last_t,
                    event_id=ev.event_id,
                )
                m.events.labels(outcome="out_of_order").inc()
            fut = w.pending[outcome.index].future
            if not fut.done():
                fut.set_result(result)

    # --- compute ------------------------------------------------------------------------------

    async def _compute(self, works: list[_Work]) -> None:
        """Run every stream's steps: one ``model.forward`` per model, on the worker thread."""
        by_model: dict[str, list[_Work]] = {}
        for w in works:
            by_model.setdefault(w.model_name, []).append(w)
        calls = []
        for name, ws in by_model.items():
            rows = []
            for w in ws:
                evs = [w.pending[s.index].item.event for s in w.plan.steps]
                rows.append(
                    _Row(
                        h0=w.record.h if w.plan.resume and w.record is not None else None,
                        x=np.asarray([ev.x for ev in evs], dtype=np.float32),
                        dt=np.asarray([s.dt for s in w.plan.steps], dtype=np.float64).astype(
                            np.float32
                        ),
                        fresh=np.asarray([s.fresh for s in w.plan.steps], dtype=bool),
                    )
                )
            calls.append((self._models[name], rows))
        loop = asyncio.get_running_loop()
        try:
            results = await loop.run_in_executor(self._executor, self._run_models, calls)
        except RuntimeError as exc:
            if self._executor_closed:
                raise EngineStopped("the engine is stopped") from exc
            raise
        for (_, ws), (ys, hs) in zip(by_model.items(), results, strict=True):
            for b, w in enumerate(ws):
                n = len(w.plan.steps)
                w.outputs = [tuple(row) for row in ys[b, :n].tolist()]
                w.h = hs[b].tobytes()
                w.x = floats_to_f32(w.pending[w.plan.steps[-1].index].item.event.x)

    def _run_models(
        self, calls: list[tuple[ServableModel, list[_Row]]]
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Worker thread: one forward per model. Returns per model (y[B,T,O], h_T[B,S] <f4)."""
        t0 = time.perf_counter()
        out = []
        with torch.inference_mode():
            for model, rows in calls:
                out.append(self._forward(model, rows))
        self._metrics.batch_compute.observe(time.perf_counter() - t0)
        return out

    def _forward(self, model: ServableModel, rows: list[_Row]) -> tuple[np.ndarray, np.ndarray]:
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
        dev = self.device
        resumed = [b for b, r in enumerate(rows) if r.h0 is not None]
        stored = None
        if resumed:
            raw = b"".join(rows[b].h0 or b"" for b in resumed)
            stored = torch.from_numpy(
                np.frombuffer(raw, dtype="<f4").reshape(len(resumed), S).copy()
            ).to(dev)
        if stored is not None and len(resumed) == B:
            h0 = stored
        else:
            h0 = model.init_state(B, device=dev).clone()
            if stored is not None:
                idx = torch.as_tensor(resumed, dtype=torch.long, device=dev)
                h0[idx] = stored.to(h0.dtype)
        y, hT = model.forward(
            torch.from_numpy(x).to(dev),
            torch.from_numpy(dt).to(dev),
            h0=h0,
            mask=None if mask.all() else torch.from_numpy(mask).to(dev),
            reset=torch.from_numpy(reset).to(dev) if reset.any() else None,
        )
        y = model.present(y)
        y_np = y.detach().to("cpu").numpy()
        h_np = hT.detach().to("cpu", torch.float32).numpy().astype("<f4", copy=False)
        return y_np, np.ascontiguousarray(h_np)

    def _predict_one(self, model: ServableModel, h: bytes, x: bytes, dt: float) -> list[float]:
        """Worker thread: the output at ``dt`` seconds after the state ``h`` with input ``x``
        held. That is ``advance(h, dt, x)`` read out; ``step`` with the held input computes
        exactly that and also returns the output, so it is used."""
        dev = self.device
        with torch.inference_mode():
            h_t = torch.from_numpy(np.frombuffer(h, dtype="<f4").copy()).reshape(1, -1).to(dev)
            x_t = torch.from_numpy(np.frombuffer(x, dtype="<f4").copy()).reshape(1, -1).to(dev)
            dt_t = torch.tensor([dt], dtype=torch.float32, device=dev)
            y, _ = model.step(x_t, dt_t, h_t)
            y = model.present(y)
            return [float(v) for v in y[0].detach().to("cpu").tolist()]

    # --- store I/O ----------------------------------------------------------------------------

    async def _load(self, keys: list[str]) -> list[Versioned | None]:
        t0 = time.perf_counter()
        try:
            return await self._store.load_many(keys)
        finally:
            self._metrics.state_store.labels(op="load").observe(time.perf_counter() - t0)

    async def _save(self, writes: list[CasWrite]) -> list[bool]:
        if not writes:
            return []
        t0 = time.perf_counter()
        try:
            return await self._store.cas_many(writes)
        finally:
            self._metrics.state_store.labels(op="save").observe(time.perf_counter() - t0)

    async def _load_record(self, key: str) -> tuple[int, StreamRecord | None]:
        (stored,) = await self._load([key])
        if stored is None:
            return 0, None
        try:
            return stored.version, decode_record(stored.payload)
        except CodecError as exc:
            raise StateUnreadable(f"stored state of stream is unreadable: {exc}") from exc

    async def _live_record(
        self, tenant: str, model_name: str, stream_id: str
    ) -> tuple[ServableModel, StreamRecord | None]:
        model = self._model(model_name)
        _, record = await self._load_record(state_key(tenant, model_name, stream_id))
        if not is_live(record, self._policies[model_name], self._clock()):
            return model, None
        return model, record

    # --- reads and admin ----------------------------------------------------------------------

    async def predict_at(
        self, tenant: str, model_name: str, stream_id: str, at: float
    ) -> Prediction:
        """The prediction the stream's state gives at time ``at`` (>= its last event) with its
        last input held and no new event. Changes nothing."""
        model, record = await self._live_record(tenant, model_name, stream_id)
        if record is None:
            raise StreamNotFound(f"stream {stream_id!r} has no state for model {model_name!r}")
        served = self._policies[model_name].version
        if record.version != served:
            raise InvalidState(
                f"the state of stream {stream_id!r} belongs to model version {record.version}; "
                f"the served version is {served} (the stream restarts with its next event)"
            )
        if not math.isfinite(at):
            raise InvalidTime(f"time must be a finite number; got {at!r}")
        if at < record.last_t:
            raise InvalidTime(
                f"time {at!r} is before the stream's last event time {record.last_t!r}"
            )
        dt = at - record.last_t
        loop = asyncio.get_running_loop()
        try:
            y = await loop.run_in_executor(
                self._executor, self._predict_one, model, record.h, record.x, dt
            )
        except RuntimeError as exc:
            if self._executor_closed:
                raise EngineStopped("the engine is stopped") from exc
            raise
        return Prediction(
            stream_id=stream_id,
            t=at,
            dt=dt,
            y=tuple(y),
            model=model_name,
            version=record.version,
            duplicate=False,
            reset=None,
            event_id=None,
            count=record.count,
        )

    def _info(self, stream_id: str, record: StreamRecord) -> StreamInfo:
        return StreamInfo(
            stream_id=stream_id,
            model=record.model,
            version=record.version,
            last_t=record.last_t,
            count=record.count,
            created=record.created,
            updated=record.updated,
            expires_at=record.updated + self.config.state_ttl_s,
        )

    async def stream_info(self, tenant: str, model_name: str, stream_id: str) -> StreamInfo | None:
        """Metadata of the stream's state; ``None`` when it has none (or it expired)."""
        _, record = await self._live_record(tenant, model_name, stream_id)
        return None if record is None else self._info(stream_id, record)

    async def export_state(
        self, tenant: str, model_name: str, stream_id: str
    ) -> StateSnapshot | None:
        """The stream's state (exact float32 values); ``None`` when it has none."""
        _, record = await self._live_record(tenant, model_name, stream_id)
        if record is None:
            return None
        return StateSnapshot(
            h=record.h_floats(),
            x_last=record.x_floats(),
            last_t=record.last_t,
            count=record.count,
            version=record.version,
            recent_ids=tuple(e.event_id for e in record.recent),
            recent=record.recent,
            model=record.model,
            created=record.created,
            updated=record.updated,
        )

    def _check_snapshot(
        self, model_name: str, model: ServableModel, snap: StateSnapshot
    ) -> StreamRecord:
        served = self._policies[model_name].version
        if snap.version != served:
            raise InvalidState(
                f"the state is of model version {snap.version!r}; the served version is {served!r}"
            )
        if len(snap.h) != model.state_size:
            raise InvalidState(
                f"h has {len(snap.h)} values; the model's state has {model.state_size}"
            )
        if len(snap.x_last) != model.input_size:
            raise InvalidState(
                f"x_last has {len(snap.x_last)} values; the model takes {model.input_size}"
            )
        if not all(math.isfinite(v) and abs(v) <= _F32_MAX for v in (*snap.h, *snap.x_last)):
            raise InvalidState("h and x_last must be finite float32 values")
        h = floats_to_f32(snap.h)
        x = floats_to_f32(snap.x_last)
        if not math.isfinite(snap.last_t):
            raise InvalidState(f"last_t must be a finite time; got {snap.last_t!r}")
        if isinstance(snap.count, bool) or not isinstance(snap.count, int) or snap.count < 0:
            raise InvalidState(f"count must be an integer >= 0; got {snap.count!r}")
        recent: dict[str, RecentEntry] = {}
        for e in snap.recent:
            if len(e.y) != model.output_size or not _finite((e.t, e.dt, *e.y)):
                raise InvalidState(
                    f"recent prediction {e.event_id!r} must have {model.output_size} finite "
                    "outputs and a finite time and dt"
                )
            if e.reset not in (None, "first_event", *RESET_REASONS):
                raise InvalidState(f"recent prediction {e.event_id!r} has an unknown reset")
            recent.pop(e.event_id, None)
            recent[e.event_id] = e
        window = self.config.dedupe_window
        entries = tuple(recent.values())
        now = self._clock()
        return StreamRecord(
            model=model_name,
            version=served,
            h=h,
            x=x,
            last_t=float(snap.last_t),
            count=snap.count,
            created=snap.created
            if snap.created is not None and math.isfinite(snap.created)
            else now,
            updated=now,
            recent=entries[len(entries) - window :] if window else (),
        )

    async def import_state(
        self, tenant: str, model_name: str, stream_id: str, snap: StateSnapshot
    ) -> StreamInfo:
        """Replace the stream's state with ``snap`` (checked against the served model)."""
        model = self._model(model_name)
        record = self._check_snapshot(model_name, model, snap)
        key = state_key(tenant, model_name, stream_id)
        payload = encode_record(record)
        for _ in range(self.config.max_cas_retries + 1):
            (stored,) = await self._load([key])
            expected = 0 if stored is None else stored.version
            (ok,) = await self._save([CasWrite(key, expected, payload, self.config.store_ttl_s)])
            if ok:
                return self._info(stream_id, record)
            self._metrics.state_conflicts.inc()
        raise StateConflict("the stream's state kept changing during the import; retry")

    async def delete_stream(self, tenant: str, model_name: str, stream_id: str) -> bool:
        """Forget the stream's state; ``True`` if it had one (an expired record kept for its
        grace period is removed too, but counts as none, as ``stream_info`` says)."""
        self._model(model_name)
        key = state_key(tenant, model_name, stream_id)
        (stored,) = await self._load([key])
        live = True
        if stored is not None:
            try:
                record = decode_record(stored.payload)
                live = is_live(record, self._policies[model_name], self._clock())
            except CodecError:
                live = True  # an unreadable record is there; deleting it is the way out
        t0 = time.perf_counter()
        try:
            existed = await self._store.delete(key)
        finally:
            self._metrics.state_store.labels(op="delete").observe(time.perf_counter() - t0)
        return existed and live

    # --- live feed and housekeeping -------------------------------------------------------------

    def _enqueue_publish(self, messages: list[tuple[str, str]]) -> None:
        q = self._publish_queue
        if q is None:
            return
        try:
            q.put_nowait(messages)
        except asyncio.QueueFull:
            self._metrics.live_dropped.inc(len(messages))

    async def _publish_loop(self) -> None:
        """Publishes batches of live messages in order; a failure loses messages, not state."""
        assert self._publish_queue is not None
        while True:
            messages = await self._publish_queue.get()
            if messages is None:
                return
            try:
                await self._live.publish_many(messages)
            except Exception:
                log.warning("publishing %d live messages failed", len(messages), exc_info=True)

    def _touch_active(self, keys: Mapping[str, Any], now: float) -> None:
        for key in keys:
            self._active[key] = now
            self._active.move_to_end(key)
        self._prune_active(now)

    def _prune_active(self, now: float) -> None:
        horizon = now - self.config.active_window_s
        while self._active:
            key, seen = next(iter(self._active.items()))
            if seen >= horizon:
                break
            del self._active[key]
        self._metrics.active_streams.set(len(self._active))

    async def _housekeep(self) -> None:
        period = min(5.0, self.config.active_window_s / 10)
        while True:
            await asyncio.sleep(period)
            self._prune_active(time.monotonic())

    def active_stream_count(self) -> int:
        self._prune_active(time.monotonic())
        return len(self._active)
