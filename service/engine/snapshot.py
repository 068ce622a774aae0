"""Stored records as the admin operations show them, and back: pure conversions between a
:class:`StreamRecord` and :class:`StreamInfo` / :class:`StateSnapshot`, with the complete
check an imported snapshot passes before it may replace a stream's state."""

from __future__ import annotations

import math

import numpy as np

from service.engine.errors import InvalidState
from service.engine.registry import ServableModel
from service.engine.semantics import Policy
from service.engine.types import StateSnapshot, StreamInfo, all_finite
from service.store.reasons import RESET_REASONS
from service.store.recent import RecentEntry, RecentWindow
from service.store.record import StreamRecord, floats_to_f32

_F32_MAX = float(np.finfo(np.float32).max)


def info_of(stream_id: str, record: StreamRecord, ttl_s: float) -> StreamInfo:
    """The metadata of ``record``; it expires ``ttl_s`` after its last write."""
    return StreamInfo(
        stream_id=stream_id,
        model=record.model,
        version=record.version,
        last_t=record.last_t,
        count=record.count,
        created=record.created,
        updated=record.updated,
        expires_at=record.updated + ttl_s,
    )


def snapshot_of(record: StreamRecord) -> StateSnapshot:
    """``record`` for export (exact float32 values)."""
    return StateSnapshot(
        h=record.h_floats(),
        x_last=record.x_floats(),
        last_t=record.last_t,
        count=record.count,
        version=record.version,
        recent_ids=tuple(e.event_id for e in record.recent),
        recent=tuple(record.recent),
        model=record.model,
        created=record.created,
        updated=record.updated,
    )


def record_of(
    snap: StateSnapshot, model: ServableModel, policy: Policy, now: float
) -> StreamRecord:
    """The record that importing ``snap`` stores for ``model`` served under ``policy``, written
    at ``now``. :class:`InvalidState` if it does not fit the served model."""
    served = policy.version
    if snap.version != served:
        raise InvalidState(
            f"the state is of model version {snap.version!r}; the served version is {served!r}"
        )
    if len(snap.h) != model.state_size:
        raise InvalidState(f"h has {len(snap.h)} values; the model's state has {model.state_size}")
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
        if len(e.y) != model.output_size or not all_finite((e.t, e.dt, *e.y)):
            raise InvalidState(
                f"recent prediction {e.event_id!r} must have {model.output_size} finite "
                "outputs and a finite time and dt"
            )
        if e.reset not in RESET_REASONS:
            raise InvalidState(f"recent prediction {e.event_id!r} has an unknown reset")
        recent.pop(e.event_id, None)
        recent[e.event_id] = e
    return StreamRecord(
        model=policy.model,
        version=served,
        h=h,
        x=x,
        last_t=float(snap.last_t),
        count=snap.count,
        created=snap.created if snap.created is not None and math.isfinite(snap.created) else now,
        updated=now,
        recent=RecentWindow.of(recent.values()).last(policy.dedupe_window),
    )
