"""The engine: a queue of events, and a batch loop that loads, decides, computes and commits.

One batch (:meth:`Engine._process`), as DESIGN §2 draws it::

    batcher --(up to max_batch events / max_delay_s)--> group by stream
      -> load every stream's record (one pipelined round trip)
      -> plan each stream (service.engine.semantics: duplicates, order, gaps, expiry, restarts)
      -> one model.forward per served model over all its streams (padded with mask, resets
         mid-sequence via reset), in torch.inference_mode on the engine's single worker thread
         (service.engine.compute)
      -> refuse any event whose step went non-finite and recompute its stream without it
         (service.engine.guard): no non-finite state is ever committed
      -> compare-and-set every changed record (one pipelined round trip)
      -> resolve the waiting futures of the streams that committed; reload and recompute only
         the streams that lost a CAS race (counted in liquid_state_conflicts_total)
      -> publish the new predictions to the streams' live channels (a background task)

Decisions run on the event loop as plain code; the worker thread only executes the rows it is
handed. ``submit`` raises the first engine error of its events (``StateConflict``,
``StateUnreadable``, a store error) after all of them are settled. The operations outside the
event path (``predict_at``, ``stream_info``, export, import, delete) are
:class:`service.engine.admin.StreamAdmin`'s; the engine offers them as its own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from service.engine.activity import ActiveStreams
from service.engine.admin import StreamAdmin
from service.engine.batcher import Batcher, BatcherClosed, Pending, group_by_stream
from service.engine.compute import DeviceExecutor, ModelCall, Row, StepBlock
from service.engine.config import EngineConfig
from service.engine.errors import EngineStopped, StateConflict, StateUnreadable
from service.engine.guard import finite_row, first_non_finite_step
from service.engine.jobs import Job, Request
from service.engine.lane_streams import (
    LaneStreams,
    lane_writes,
    resolve_lane,
    step_block,
    take_lane,
    take_outputs,
)
from service.engine.publish import LiveItem, LivePublisher
from service.engine.registry import ModelRegistry, ServableModel
from service.engine.results import count_outcomes, results_of
from service.engine.semantics import Plan, Step, build_record, plan_stream
from service.engine.storage import STORE_FAILURES, TimedStore, read_record
from service.engine.timing import observe_many
from service.engine.types import (
    Event,
    EventResult,
    Prediction,
    StateSnapshot,
    StreamInfo,
    check_event,
)
from service.live.bus import LiveBus
from service.metrics import Metrics
from service.store.base import CasWrite, StateStore, Versioned
from service.store.keys import live_channel, state_key
from service.store.partial import PartialStoreError
from service.store.record import StreamRecord, encode_record, floats_to_f32

log = logging.getLogger(__name__)

# Up to this many events, per-event checks cost less than numpy's per-call overhead.
SMALL_REQUEST = 4


@dataclass(eq=False, slots=True)
class _Work:
    """One stream's share of a batch attempt."""

    key: str
    pending: list[Pending[Job]]
    model_name: str
    record: StreamRecord | None
    version: int  # store version loaded (0: absent)
    plan: Plan
    events: list[Event]
    outputs: list[tuple[float, ...]] = field(default_factory=list)
    h: bytes = b""
    x: bytes = b""
    finite: bool = True  # the computed outputs and final state are all finite
    ys: np.ndarray | None = None  # kept only when not finite: [n, O] outputs of the steps
    refused: frozenset[int] = frozenset()  # events whose step went non-finite

    def row(self) -> Row:
        """The model call's input for this stream's planned steps."""
        steps = self.plan.steps
        return Row.of(
            h0=self.record.h if self.plan.resume and self.record is not None else None,
            xs=[self.events[s.index].x for s in steps],
            dts=[s.dt for s in steps],
            fresh=[s.fresh for s in steps],
        )


def _fail(pending: Sequence[Pending[Job]], exc: BaseException) -> None:
    for p in pending:
        p.item.settle(None, exc)


def _drop_failed(
    groups: dict[str, list[Pending[Job]]], failure: PartialStoreError
) -> tuple[dict[str, list[Pending[Job]]], list[Versioned | None]]:
    """Fail the streams whose records ``failure`` could not load; the others, with theirs."""
    kept: dict[str, list[Pending[Job]]] = {}
    loaded: list[Versioned | None] = []
    for i, (key, pending) in enumerate(groups.items()):
        if i in failure.failed:
            _fail(pending, failure)
        else:
            kept[key] = pending
            loaded.append(failure.results[i])
    return kept, loaded


class Engine:
    """Serves ``models`` (a :class:`ModelRegistry` or ``{name: model}``) over ``store`` and
    ``live``. ``start`` before use and ``stop`` at shutdown (it drains the queue); the store and
    bus stay the caller's to close.
    ``clock``: wall-clock seconds (injectable for tests of expiry)."""

    def __init__(
        self,
        models: ModelRegistry | Mapping[str, ServableModel],
        store: StateStore,
        live: LiveBus,
        metrics: Metrics,
        config: EngineConfig,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        registry = models if isinstance(models, ModelRegistry) else ModelRegistry(models)
        self._registry = registry.configured(config)
        self._store = TimedStore(store, metrics)
        self._metrics = metrics
        self.config = config
        self._executor = DeviceExecutor(
            config.device, metrics, config.batch_buckets, config.max_batch, config.inline_steps
        )
        self.device = self._executor.device
        self._clock = clock
        self._publisher = LivePublisher(live, metrics)
        self._active = ActiveStreams(config.active_window_s, metrics)
        self._admin = StreamAdmin(
            self._registry, self._store, self._executor, metrics, config, clock
        )
        self._batcher: Batcher[Job] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._stopped = False

    @property
    def models(self) -> Mapping[str, ServableModel]:
        return self._registry.as_mapping()

    @property
    def running(self) -> bool:
        return self._worker is not None and not self._stopped

    def active_stream_count(self) -> int:
        """Streams with an event in the last ``active_window_s`` seconds."""
        return self._active.count()

    # --- the admin operations (service.engine.admin) -------------------------------------------

    async def predict_at(
        self, tenant: str, model_name: str, stream_id: str, at: float
    ) -> Prediction:
        """The stream's output at ``at`` with its last input held; changes nothing."""
        return await self._admin.predict_at(tenant, model_name, stream_id, at)

    async def stream_info(self, tenant: str, model_name: str, stream_id: str) -> StreamInfo | None:
        """Metadata of the stream's state; ``None`` when it has none (or it expired)."""
        return await self._admin.stream_info(tenant, model_name, stream_id)

    async def export_state(
        self, tenant: str, model_name: str, stream_id: str
    ) -> StateSnapshot | None:
        """The stream's state (exact float32 values); ``None`` when it has none."""
        return await self._admin.export_state(tenant, model_name, stream_id)

    async def import_state(
        self, tenant: str, model_name: str, stream_id: str, snap: StateSnapshot
    ) -> StreamInfo:
        """Replace the stream's state with ``snap`` (checked against the served model)."""
        return await self._admin.import_state(tenant, model_name, stream_id, snap)

    async def delete_stream(self, tenant: str, model_name: str, stream_id: str) -> bool:
        """Forget the stream's state; ``True`` if it had a live one."""
        return await self._admin.delete_stream(tenant, model_name, stream_id)

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        if self._stopped:
            raise EngineStopped("a stopped engine cannot be restarted; make a new one")
        if self._worker is not None:
            return
        await self._executor.place(self._registry.as_mapping().values())
        self._batcher = Batcher(
            self.config.max_batch, self.config.max_delay_s, max_queue=self.config.max_queue
        )
        self._worker = asyncio.get_running_loop().create_task(
            self._run(), name="liquid-engine-worker"
        )
        self._publisher.start()
        self._active.start()

    async def stop(self) -> None:
        """Accept nothing new, finish every queued event (commit and answer it), then stop."""
        if self._stopped:
            return
        self._stopped = True
        if self._batcher is not None:
            self._batcher.close()
        if self._worker is not None:
            await self._worker
        await self._active.stop()
        await self._publisher.stop()
        self._executor.close()
        self._active.clear()

    # --- events -------------------------------------------------------------------------------

    async def submit(
        self, tenant: str, model_name: str, events: Sequence[Event]
    ) -> list[EventResult]:
        """Apply ``events`` (any streams; each stream's in the given order) and return one
        result per event, in order, once every state they changed is committed."""
        return await (await self.enqueue(tenant, model_name, events))

    async def enqueue(
        self, tenant: str, model_name: str, events: Sequence[Event]
    ) -> Awaitable[list[EventResult]]:
        """Queue ``events`` and return at once (after waiting only for queue space) with what
        :meth:`submit` would return, to be awaited later. Calls made one after another queue
        in that order, and the engine applies a stream's events in queue order: a caller may
        enqueue many requests before awaiting the first (a pipelining WebSocket)."""
        model = self._registry.model(model_name)
        for ev in events:
            check_event(ev, model_name, model.input_size, self.config.max_abs_input)
        return await self._put(tenant, model_name, events)

    async def submit_columns(
        self,
        tenant: str,
        model_name: str,
        stream_ids: Sequence[str],
        t: np.ndarray,
        x: np.ndarray,
        event_ids: Sequence[str | None],
        received_at: float,
    ) -> list[EventResult]:
        """:meth:`submit` for events given as columns (``t[N]`` float64 seconds, ``x[N, F]``),
        checked as arrays: what the API hands over after decoding a request once."""
        pending = await self.enqueue_columns(
            tenant, model_name, stream_ids, t, x, event_ids, received_at
        )
        return await pending

    async def enqueue_columns(
        self,
        tenant: str,
        model_name: str,
        stream_ids: Sequence[str],
        t: np.ndarray,
        x: np.ndarray,
        event_ids: Sequence[str | None],
        received_at: float,
    ) -> Awaitable[list[EventResult]]:
        """:meth:`enqueue` for events given as columns (see :meth:`submit_columns`)."""
        model = self._registry.model(model_name)
        n = len(event_ids)
        limit = self.config.max_abs_input
        xs = x.tolist()
        ts = t.tolist()
        if n <= SMALL_REQUEST or (
            x.shape != (n, model.input_size)
            or not np.isfinite(t).all()
            or not (np.abs(x) <= limit).all()
        ):
            events = [
                Event(*e, received_at)
                for e in zip(stream_ids, ts, map(tuple, xs), event_ids, strict=True)
            ]
            # per event: cheaper than array checks for a few, and names a bad event
            return await self.enqueue(tenant, model_name, events)
        events = [
            Event(sid, ti, tuple(xi), eid, received_at)
            for sid, ti, xi, eid in zip(stream_ids, ts, xs, event_ids, strict=True)
        ]
        return await self._put(tenant, model_name, events)

    async def _put(self, tenant: str, model_name: str, events: Sequence[Event]) -> Request:
        if self._batcher is None or self._stopped:
            raise EngineStopped("the engine is not running")
        request = Request(len(events), asyncio.get_running_loop().create_future())
        keys: dict[str, str] = {}
        jobs = []
        for slot, ev in enumerate(events):
            key = keys.get(ev.stream_id)
            if key is None:
                key = keys[ev.stream_id] = state_key(tenant, model_name, ev.stream_id)
            jobs.append(Job(tenant, model_name, ev, key, request, slot))
        try:
            await self._batcher.put_many(jobs)
        except BatcherClosed:
            raise EngineStopped("the engine is stopping") from None
        return request

    async def _run(self) -> None:
        """Take batches and process them, up to ``max_inflight_batches`` at once: a batch may
        start while earlier ones wait on the store, but never one that shares a stream with a
        batch in flight (it waits for that one), so each stream's events still apply in order
        and one batch at a time."""
        assert self._batcher is not None
        inflight: dict[asyncio.Task[None], frozenset[str]] = {}
        limit = self.config.max_inflight_batches
        try:
            while True:
                batch = await self._batcher.next_pending()
                if not batch:
                    return  # closed and drained
                keys = frozenset(p.item.stream_key for p in batch)
                while inflight and (
                    len(inflight) >= limit or any(keys & busy for busy in inflight.values())
                ):
                    done, _ = await asyncio.wait(inflight, return_when=asyncio.FIRST_COMPLETED)
                    for task in done:
                        del inflight[task]
                task = asyncio.get_running_loop().create_task(self._process_safely(batch))
                inflight[task] = keys
        finally:
            if inflight:
                await asyncio.wait(inflight)

    async def _process_safely(self, batch: list[Pending[Job]]) -> None:
        try:
            await self._process(batch)
        except STORE_FAILURES as exc:  # the store's condition: one line, no trace per batch
            log.warning("batch of %d events failed: %r", len(batch), exc)
            _fail(batch, exc)
        except Exception as exc:  # a store or model failure fails this batch, not the engine
            log.exception("batch of %d events failed", len(batch))
            _fail(batch, exc)

    async def _process(self, batch: list[Pending[Job]]) -> None:
        m = self._metrics
        mono = time.monotonic()
        m.batch_size.observe(len(batch))
        waits = np.maximum(mono - np.fromiter((p.enqueued_at for p in batch), np.float64), 0.0)
        observe_many(m.queue_wait, waits)
        m.stages["queue_wait"].observe(float(waits.max()))
        lags = np.fromiter((p.item.event.received_at - p.item.event.t for p in batch), np.float64)
        observe_many(m.event_lag, np.maximum(lags, 0.0))
        groups = group_by_stream(batch, key=lambda p: p.item.stream_key)
        self._active.touch(groups, mono)
        todo = groups
        for attempt in range(self.config.max_cas_retries + 1):
            try:
                loaded = await self._store.load(list(todo))
            except PartialStoreError as exc:
                # some cluster nodes did not answer: fail their streams, go on with the others
                log.warning("state store: %s", exc)
                todo, loaded = _drop_failed(todo, exc)
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
            _fail(pending, err)

    async def _attempt(
        self, groups: dict[str, list[Pending[Job]]], loaded: list[Versioned | None]
    ) -> dict[str, list[Pending[Job]]]:
        """Plan, compute and commit ``groups``; return the groups that lost a CAS race."""
        plan_stage = self._metrics.stages["plan"]
        t0 = time.perf_counter()
        now = self._clock()
        lanes: list[LaneStreams] = []
        if self.config.lane:  # one event per stream, as arrays (service.engine.lane)
            lanes, groups, loaded = take_lane(groups, loaded, self._registry, now)
        works = self._plan(groups, loaded, now)
        computing = [w for w in works if w.plan.writes]
        planning = time.perf_counter() - t0
        if computing or lanes:
            back = await self._compute(computing, lanes)
            if back:  # lane streams whose step was not finite: the per-stream path refuses it
                again = self._plan(
                    {key: pending for key, (pending, _) in back.items()},
                    [stored for _, stored in back.values()],
                    now,
                )
                await self._compute(again, [])
                works += again
                computing += again
            await self._refuse_non_finite(computing, now)
        policy = self._registry.policy
        t0 = time.perf_counter()
        writing = [w for w in works if w.plan.writes]  # a stream may have lost all its steps
        ttl = self.config.store_ttl_s
        lane_writes_ = [lane_writes(lane, ttl, now) for lane in lanes]
        writes = [write for ws in lane_writes_ for write in ws]
        for w in writing:
            new = build_record(w.plan, policy(w.model_name), w.events, w.outputs, w.h, w.x, now)
            writes.append(CasWrite(w.key, w.version, encode_record(new), ttl))
        planning += time.perf_counter() - t0
        failure: PartialStoreError | None = None
        try:
            won: list[bool | None] = list(await self._store.save(writes))
        except PartialStoreError as exc:  # writes whose outcome is unknown are not acknowledged
            log.warning("state store: %s", exc)
            failure, won = exc, exc.results
        t0 = time.perf_counter()
        lost: dict[str, list[Pending[Job]]] = {}
        messages: list[LiveItem] = []
        live = messages if self.config.publish_live else None
        at = 0
        for lane, lane_ws in zip(lanes, lane_writes_, strict=True):
            outcome = won[at : at + len(lane_ws)]
            at += len(lane_ws)
            for j, ok in enumerate(outcome):
                b = int(lane.steps[j])
                if ok is None and failure is not None:
                    _fail([lane.pending[b]], failure)
                elif not ok:
                    lost[lane.keys[b]] = [lane.pending[b]]
            committed_steps = np.array([ok is True for ok in outcome], dtype=bool)
            resolve_lane(lane, committed_steps, self._registry, self._metrics, live)
        won = won[at:]
        committed: list[_Work] = []
        for w, ok in zip(writing, won, strict=True):
            if ok is None and failure is not None:
                _fail(w.pending, failure)
            elif ok:
                committed.append(w)
            else:
                lost[w.key] = w.pending
        committed.extend(w for w in works if not w.plan.writes)
        for w in committed:
            self._resolve(w, messages)
        count_outcomes(self._metrics, (o for w in committed for o in w.plan.outcomes))
        if messages:
            self._publisher.enqueue(messages)
        plan_stage.observe(planning + time.perf_counter() - t0)
        return lost

    def _plan(
        self, groups: dict[str, list[Pending[Job]]], loaded: list[Versioned | None], now: float
    ) -> list[_Work]:
        """Each stream's plan (streams whose record cannot be read fail here)."""
        works: list[_Work] = []
        policy = self._registry.policy
        for (key, pending), stored in zip(groups.items(), loaded, strict=True):
            model_name = pending[0].item.model_name
            try:
                record = None if stored is None else read_record(stored)
            except StateUnreadable as err:
                _fail(pending, err)
                continue
            events = [p.item.event for p in pending]
            plan = plan_stream(record, events, policy(model_name), now)
            version = stored.version if stored else 0
            works.append(_Work(key, pending, model_name, record, version, plan, events))
        return works

    def _resolve(self, w: _Work, messages: list[LiveItem]) -> None:
        """Answer a committed stream's events, count them, and queue its live messages."""
        events = w.events
        version = self._registry.version(w.model_name)
        results = results_of(w.plan.outcomes, events, w.outputs, w.model_name, version)
        publish = self.config.publish_live
        output_names = self._registry.model(w.model_name).output_names if publish else None
        channel = None
        for outcome, result in zip(w.plan.outcomes, results, strict=True):
            if publish and isinstance(outcome, Step):
                assert isinstance(result, Prediction)
                ev = events[outcome.index]
                if channel is None:  # one stream, one tenant: the same channel for all
                    channel = live_channel(w.pending[outcome.index].item.tenant, ev.stream_id)
                messages.append((channel, result, ev.x, output_names))
            w.pending[outcome.index].item.settle(result)

    async def _refuse_non_finite(self, works: list[_Work], now: float) -> None:
        """Never commit a non-finite state or answer a non-finite output: in each stream whose
        computed row is not finite, refuse the event whose step went non-finite, plan the
        stream again without it and recompute, until every row is finite (each round refuses
        at least one more event, so this ends)."""
        bad = [w for w in works if not w.finite]
        while bad:
            for w in bad:
                model = self._registry.model(w.model_name)
                assert w.ys is not None
                j = await first_non_finite_step(self._executor, model, w.row(), w.ys)
                index = w.plan.steps[j].index
                log.info("%s: batch event %d refused: its step went non-finite", w.key, index)
                w.refused = w.refused | {index}
                policy = self._registry.policy(w.model_name)
                w.plan = plan_stream(w.record, w.events, policy, now, w.refused)
            redo = [w for w in bad if w.plan.writes]
            if redo:
                await self._compute(redo)
            bad = [w for w in redo if not w.finite]

    async def _compute(
        self, works: list[_Work], lanes: Sequence[LaneStreams] = ()
    ) -> dict[str, tuple[list[Pending[Job]], Versioned | None]]:
        """Run every stream's planned steps and the lanes' steps: one ``model.forward`` per
        model, on the worker thread; store each stream's outputs, final state and last input on
        its work, and the lanes' on them. Returns the lane streams whose step was not finite
        (dropped from their lane)."""
        by_model: dict[str, tuple[list[_Work], list[LaneStreams]]] = {}
        for w in works:
            by_model.setdefault(w.model_name, ([], []))[0].append(w)
        blocks: dict[str, StepBlock] = {}
        for lane in lanes:  # at most one lane per model
            block = step_block(lane)
            if block is not None:
                by_model.setdefault(lane.model_name, ([], []))[1].append(lane)
                blocks[lane.model_name] = block
        calls: list[ModelCall] = [
            (self._registry.model(name), [w.row() for w in ws], blocks.get(name))
            for name, (ws, _) in by_model.items()
        ]
        results = await self._executor.forward(calls) if calls else []
        back: dict[str, tuple[list[Pending[Job]], Versioned | None]] = {}
        for (ws, model_lanes), (ys, hs) in zip(by_model.values(), results, strict=True):
            R = len(ws)
            for lane in model_lanes:
                back.update(take_outputs(lane, ys[R:, 0], hs[R:]))
            if not ws:
                continue
            ys, hs = ys[:R], hs[:R]
            all_finite = finite_row(ys, hs)  # one check for the whole call in the common case
            # the call's arrays leave numpy once: outputs as Python floats, states as raw bytes
            outputs = ys.tolist()
            S4 = hs.shape[1] * 4
            raw_h = hs.tobytes()
            for b, w in enumerate(ws):
                n = len(w.plan.steps)
                w.outputs = [tuple(row) for row in outputs[b][:n]]
                w.h = raw_h[b * S4 : (b + 1) * S4]
                w.x = floats_to_f32(w.events[w.plan.steps[-1].index].x)
                w.finite = all_finite or finite_row(ys[b, :n], hs[b])
                w.ys = None if w.finite else ys[b, :n].copy()
        return back
