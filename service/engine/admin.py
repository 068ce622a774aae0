"""Operations on one stream's state outside the event path: the prediction at a time without
an event, metadata, export, import and delete. They go to the store directly, not through the
batch loop; a write (import) is a compare-and-set like the batch loop's.

``predict_at`` runs ``model.step(x_last, Δt, h)``: the last input held over Δt, which is
``advance`` plus the readout, and gives the output. It changes nothing. An expired record
(kept for its grace period only to report ``"expired"``) counts as no state.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from service.engine.compute import DeviceExecutor
from service.engine.config import EngineConfig
from service.engine.errors import (
    InvalidState,
    InvalidTime,
    StateConflict,
    StateUnreadable,
    StreamNotFound,
)
from service.engine.registry import ModelRegistry, ServableModel
from service.engine.semantics import is_live
from service.engine.snapshot import info_of, record_of, snapshot_of
from service.engine.storage import TimedStore, read_record
from service.engine.types import Prediction, StateSnapshot, StreamInfo
from service.metrics import Metrics
from service.store.base import CasWrite
from service.store.keys import state_key
from service.store.record import StreamRecord, encode_record


class StreamAdmin:
    """The admin operations over the engine's served models, store and device executor."""

    def __init__(
        self,
        registry: ModelRegistry,
        store: TimedStore,
        executor: DeviceExecutor,
        metrics: Metrics,
        config: EngineConfig,
        clock: Callable[[], float],
    ) -> None:
        self._registry = registry
        self._store = store
        self._executor = executor
        self._metrics = metrics
        self.config = config
        self._clock = clock

    async def _live_record(
        self, tenant: str, model_name: str, stream_id: str
    ) -> tuple[ServableModel, StreamRecord | None]:
        model = self._registry.model(model_name)
        _, record = await self._store.load_record(state_key(tenant, model_name, stream_id))
        if not is_live(record, self._registry.policy(model_name), self._clock()):
            return model, None
        return model, record

    async def predict_at(
        self, tenant: str, model_name: str, stream_id: str, at: float
    ) -> Prediction:
        """The prediction the stream's state gives at time ``at`` (>= its last event) with its
        last input held and no new event. Changes nothing."""
        model, record = await self._live_record(tenant, model_name, stream_id)
        if record is None:
            raise StreamNotFound(f"stream {stream_id!r} has no state for model {model_name!r}")
        served = self._registry.version(model_name)
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
        y = await self._executor.predict_one(model, record.h, record.x, dt)
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

    async def stream_info(self, tenant: str, model_name: str, stream_id: str) -> StreamInfo | None:
        """Metadata of the stream's state; ``None`` when it has none (or it expired)."""
        _, record = await self._live_record(tenant, model_name, stream_id)
        return None if record is None else info_of(stream_id, record, self.config.state_ttl_s)

    async def export_state(
        self, tenant: str, model_name: str, stream_id: str
    ) -> StateSnapshot | None:
        """The stream's state (exact float32 values); ``None`` when it has none."""
        _, record = await self._live_record(tenant, model_name, stream_id)
        return None if record is None else snapshot_of(record)

    async def import_state(
        self, tenant: str, model_name: str, stream_id: str, snap: StateSnapshot
    ) -> StreamInfo:
        """Replace the stream's state with ``snap`` (checked against the served model)."""
        model = self._registry.model(model_name)
        record = record_of(snap, model, self._registry.policy(model_name), self._clock())
        key = state_key(tenant, model_name, stream_id)
        payload = encode_record(record)
        for _ in range(self.config.max_cas_retries + 1):
            (stored,) = await self._store.load([key])
            expected = 0 if stored is None else stored.version
            write = CasWrite(key, expected, payload, self.config.store_ttl_s)
            (ok,) = await self._store.save([write])
            if ok:
                return info_of(stream_id, record, self.config.state_ttl_s)
            self._metrics.state_conflicts.inc()
        raise StateConflict("the stream's state kept changing during the import; retry")

    async def delete_stream(self, tenant: str, model_name: str, stream_id: str) -> bool:
        """Forget the stream's state; ``True`` if it had one (an expired record kept for its
        grace period is removed too, but counts as none, as ``stream_info`` says)."""
        self._registry.model(model_name)
        key = state_key(tenant, model_name, stream_id)
        (stored,) = await self._store.load([key])
        live = True
        if stored is not None:
            try:
                live = is_live(
                    read_record(stored), self._registry.policy(model_name), self._clock()
                )
            except StateUnreadable:
                live = True  # an unreadable record is there; deleting it is the way out
        existed = await self._store.delete(key)
        return existed and live
