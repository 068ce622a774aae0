"""A stream's state as JSON (``GET``/``PUT /v1/streams/{stream_id}/state``) and back.

The JSON is checked here to the last field (types, finiteness, ranges) so that a bad document
is a 422 ``invalid_state`` and never reaches the codec; the engine then checks it against the
served model (version, sizes).
"""

from __future__ import annotations

import math
from typing import Any

from service.api.errors import ApiError, ErrorCode
from service.api.parsing import MAX_EVENT_ID_CHARS, FieldError, parse_number, parse_timestamp
from service.engine import StateSnapshot
from service.engine.registry import ServedModel
from service.store.reasons import RESET_REASONS
from service.store.recent import RecentEntry

_KEYS = frozenset(
    {
        "stream_id",
        "model",
        "version",
        "h",
        "x_last",
        "last_t",
        "count",
        "created",
        "updated",
        "recent",
    }
)
_RECENT_KEYS = frozenset({"id", "t", "dt", "y", "reset", "count"})
_MAX_COUNT = 2**63 - 1
_MAX_FLOATS = 1 << 20


def snapshot_json(stream_id: str, snap: StateSnapshot) -> dict[str, Any]:
    return {
        "stream_id": stream_id,
        "model": snap.model,
        "version": snap.version,
        "h": list(snap.h),
        "x_last": list(snap.x_last),
        "last_t": snap.last_t,
        "count": snap.count,
        "created": snap.created,
        "updated": snap.updated,
        "recent": [
            {
                "id": e.event_id,
                "t": e.t,
                "dt": e.dt,
                "y": list(e.y),
                "reset": e.reset,
                "count": e.count,
            }
            for e in snap.recent
        ],
    }


def _bad(message: str, field: str) -> ApiError:
    return ApiError(ErrorCode.INVALID_STATE, f"{field}: {message}", {"field": field})


def _floats(value: Any, field: str) -> tuple[float, ...]:
    if not isinstance(value, list) or len(value) > _MAX_FLOATS:
        raise _bad("must be a list of numbers", field)
    try:
        return tuple(parse_number(v, f"{field}[{i}]") for i, v in enumerate(value))
    except FieldError as exc:
        raise _bad(exc.message, exc.field) from None


def _count(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_COUNT:
        raise _bad(f"must be an integer within 0..{_MAX_COUNT}", field)
    return value


def _seconds(value: Any, field: str, *, optional: bool = False, timestamp: bool = True) -> float:
    if value is None and optional:
        return math.nan
    try:
        if timestamp:
            return parse_timestamp(value, field)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise FieldError(ErrorCode.INVALID_STATE, "must be a number", field)
        number = float(value)
        if not (math.isfinite(number) and number >= 0):
            raise FieldError(ErrorCode.INVALID_STATE, "must be a finite number >= 0", field)
        return number
    except (FieldError, OverflowError) as exc:
        message = exc.message if isinstance(exc, FieldError) else "is out of range"
        raise _bad(message, field) from None


def _recent(value: Any, index: int) -> RecentEntry:
    field = f"recent[{index}]"
    if not isinstance(value, dict):
        raise _bad("must be an object {id, t, dt, y, reset, count}", field)
    unknown = [k for k in value if k not in _RECENT_KEYS]
    if unknown:
        raise _bad(f"unknown field(s) {', '.join(map(repr, unknown[:5]))}", field)
    for key in ("id", "t", "dt", "y", "count"):
        if key not in value:
            raise _bad(f"needs {key!r}", field)
    event_id = value["id"]
    if not isinstance(event_id, str) or not 0 < len(event_id) <= MAX_EVENT_ID_CHARS:
        raise _bad(f"must be a string of 1 to {MAX_EVENT_ID_CHARS} characters", f"{field}.id")
    reset = value.get("reset")
    if reset not in RESET_REASONS:
        raise _bad(f"must be one of {RESET_REASONS}", f"{field}.reset")
    return RecentEntry(
        event_id=event_id,
        t=_seconds(value["t"], f"{field}.t"),
        dt=_seconds(value["dt"], f"{field}.dt", timestamp=False),
        y=_floats(value["y"], f"{field}.y"),
        reset=reset,
        count=_count(value["count"], f"{field}.count"),
    )


def snapshot_from_json(body: Any, served: ServedModel) -> StateSnapshot:
    """Check an imported state document completely and build the engine's snapshot."""
    if not isinstance(body, dict):
        raise ApiError(
            ErrorCode.INVALID_STATE, "the state must be a JSON object (see GET .../state)"
        )
    unknown = [k for k in body if k not in _KEYS]
    if unknown:
        raise _bad(f"unknown field(s) {', '.join(map(repr, unknown[:5]))}", str(unknown[0]))
    for key in ("version", "h", "x_last", "last_t", "count"):
        if key not in body:
            raise _bad("is required", key)
    model = body.get("model")
    if model is not None and model != served.name:
        raise _bad(
            f"the state is of model {model!r} but this request serves {served.name!r} "
            "(select it with ?model=)",
            "model",
        )
    version = body["version"]
    if not isinstance(version, str) or not version:
        raise _bad("must be a non-empty string", "version")
    recent = body.get("recent") or []
    if not isinstance(recent, list) or len(recent) > 4096:
        raise _bad("must be a list of at most 4096 entries", "recent")
    created = _seconds(body.get("created"), "created", optional=True)
    updated = _seconds(body.get("updated"), "updated", optional=True)
    entries = tuple(_recent(v, i) for i, v in enumerate(recent))
    return StateSnapshot(
        h=_floats(body["h"], "h"),
        x_last=_floats(body["x_last"], "x_last"),
        last_t=_seconds(body["last_t"], "last_t"),
        count=_count(body["count"], "count"),
        version=version,
        recent_ids=tuple(e.event_id for e in entries),
        recent=entries,
        model=served.name,
        created=None if math.isnan(created) else created,
        updated=None if math.isnan(updated) else updated,
    )
