"""The API's answers as JSON: predictions, rejections and live messages, each shaped here and
nowhere else (the HTTP answer, the WebSocket answer and the live feed share these shapes)."""

from __future__ import annotations

import datetime as _dt
import json
import logging
import math
from collections.abc import Sequence
from typing import Any

from service.engine import Prediction, Rejection
from service.engine.registry import ModelRegistry

log = logging.getLogger(__name__)


def rfc3339(t: float) -> str:
    """Epoch seconds -> ``YYYY-MM-DDTHH:MM:SS.ffffffZ``."""
    stamp = _dt.datetime.fromtimestamp(t, tz=_dt.timezone.utc)
    return stamp.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def named_outputs(
    y: Sequence[float], names: Sequence[str] | None
) -> dict[str, float | None] | list[float | None]:
    """Outputs by name when the model names them; a non-finite value (never expected of a
    bounded model) becomes ``null`` rather than invalid JSON."""
    values = [float(v) if math.isfinite(v) else None for v in y]
    if names:
        return dict(zip(names, values, strict=False))
    return values


def prediction_json(registry: ModelRegistry, p: Prediction) -> dict[str, Any]:
    """The API's prediction object."""
    names = registry.get(p.model).output_names if p.model in registry else None
    return {
        "stream_id": p.stream_id,
        "t": p.t,
        "time": rfc3339(p.t),
        "dt": p.dt,
        "outputs": named_outputs(p.y, names),
        "model": p.model,
        "version": p.version,
        "duplicate": p.duplicate,
        "reset": p.reset,
        "id": p.event_id,
        "count": p.count,
    }


def rejection_error(r: Rejection) -> dict[str, Any]:
    """The ``error`` object of an out-of-order event."""
    return {
        "code": r.code,
        "message": r.message,
        "details": {"last_t": r.last_t, "id": r.event_id},
    }


def live_prediction(raw: str, model_filter: str | None) -> str | None:
    """A live-channel message (``service.engine.prediction_message``) as the client sees it;
    ``None`` when filtered out or unreadable."""
    try:
        msg = json.loads(raw)
        if model_filter is not None and msg.get("model") != model_filter:
            return None
        t = float(msg["t"])
        prediction = {
            "stream_id": msg["stream_id"],
            "t": t,
            "time": rfc3339(t),
            "dt": msg["dt"],
            "outputs": msg["outputs"],
            "model": msg["model"],
            "version": msg["version"],
            "duplicate": msg["duplicate"],
            "reset": msg["reset"],
            "id": msg.get("event_id"),
            "count": msg["count"],
            "x": msg.get("x"),
        }
    except (ValueError, KeyError, TypeError, AttributeError, OverflowError, OSError):
        log.warning("unreadable live message dropped: %.200r", raw)
        return None
    return json.dumps({"type": "prediction", "prediction": prediction}, separators=(",", ":"))
