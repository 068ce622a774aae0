"""The one encoder of predictions: every wire shape a prediction leaves the service in is made
here, once per prediction, with msgspec's JSON encoder.

- :func:`prediction_body`: the API's prediction object (HTTP, WebSocket and MQTT answers), a
  ``msgspec.Struct`` (built in C, about a third cheaper per event than a dict) that
  :func:`dumps` and the MessagePack encoder write like the dict it replaced;
- :func:`live_message`: what a stream's live channel carries (any replica publishes it), which
  is the WebSocket subscriber's frame itself (the prediction object plus ``x``), so sessions
  forward it without decoding (:func:`live_frame`);
- :func:`dumps`: JSON bytes of an answer (ASCII-escaped only when a string cannot be UTF-8:
  a request may carry lone surrogates, which JSON can spell, and an error echoing one must
  still render).

Outputs are named when the model names them; a non-finite output (never expected of a bounded
model, and refused by the engine's guard) becomes ``null`` rather than invalid JSON.
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
import logging
import math
import time
from collections.abc import Sequence
from typing import Any

import msgspec

from service.engine.types import Prediction, Rejection

log = logging.getLogger(__name__)

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()
_UTC = _dt.timezone.utc
# Timestamps the API accepts (1970 to the end of 9999) format through time.gmtime.
_FAST_MIN, _FAST_MAX = 0, 253402300800


def dumps(obj: Any) -> bytes:
    """``obj`` as compact JSON bytes (UTF-8; ASCII-escaped when a string has a lone surrogate).
    NaN and infinities are refused (``ValueError``), as the standard library refuses them."""
    try:
        return _encoder.encode(obj)
    except UnicodeEncodeError:
        plain = msgspec.to_builtins(obj)  # Structs as dicts, strings untouched
        return json.dumps(plain, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode(
            "ascii"
        )


def rfc3339(t: float) -> str:
    """Epoch seconds -> ``YYYY-MM-DDTHH:MM:SS.ffffffZ``, exactly as
    ``datetime.fromtimestamp(t, utc)`` rounds it (the fraction's microseconds half to even),
    without building a datetime per prediction."""
    whole = math.floor(t)
    micros = round((t - whole) * 1e6)  # t - whole is exact; then one rounding, as CPython's
    if micros >= 1_000_000:
        whole += 1
        micros -= 1_000_000
    if not _FAST_MIN <= whole < _FAST_MAX:  # outside gmtime's sure range: the datetime path
        stamp = _dt.datetime.fromtimestamp(t, tz=_UTC)
        return stamp.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"
    global _second
    seen, prefix = _second
    if seen != whole:  # a batch's events mostly share their second: format it once
        g = time.gmtime(whole)
        prefix = "%04d-%02d-%02dT%02d:%02d:%02d" % g[:6]  # noqa: UP031 - the fastest formatting
        _second = (whole, prefix)
    return "%s.%06dZ" % (prefix, micros)  # noqa: UP031


# The last whole second formatted (one tuple, replaced whole: safe to read from any thread).
_second: tuple[int, str] = (-1, "")


def named_outputs(
    y: Sequence[float], names: Sequence[str] | None
) -> dict[str, float | None] | list[float | None]:
    """Outputs by name when the model names them; non-finite values become ``None``."""
    if math.isfinite(sum(y)):  # every value finite (the common case; a huge sum just checks)
        return dict(zip(names, y, strict=False)) if names else list(y)
    values: list[float | None] = [v if math.isfinite(v) else None for v in y]
    if names:
        return dict(zip(names, values, strict=False))
    return values


class PredictionBody(msgspec.Struct):
    """The API's prediction object; fields in the order of its JSON keys."""

    stream_id: str
    t: float
    time: str
    dt: float
    outputs: dict[str, float | None] | list[float | None]
    model: str
    version: str
    duplicate: bool
    reset: str | None
    id: str | None
    count: int


def prediction_body(p: Prediction, output_names: Sequence[str] | None) -> PredictionBody:
    """The API's prediction object of ``p``."""
    return PredictionBody(
        p.stream_id, p.t, rfc3339(p.t), p.dt, named_outputs(p.y, output_names), p.model,
        p.version, p.duplicate, p.reset, p.event_id, p.count,
    )  # fmt: skip


def rejection_error(r: Rejection) -> dict[str, Any]:
    """The ``error`` object of an event that was not applied."""
    return {
        "code": r.code,
        "message": r.message,
        "details": {"last_t": r.last_t, "id": r.event_id},
    }


class LivePrediction(PredictionBody):
    """The prediction object of a live frame: the API's, then the event's input ``x``."""

    x: list[float] | None


class LiveFrame(msgspec.Struct):
    """What a stream's live channel carries, exactly the text frame WebSocket subscribers
    receive: ``model`` repeated at the top so that a session filtering by model reads a prefix,
    not the message."""

    type: str
    model: str
    prediction: LivePrediction


_FRAME_HEAD = '{"type":"prediction","model":'


def live_message(
    p: Prediction, x: Sequence[float] | None = None, output_names: Sequence[str] | None = None
) -> str:
    """What a stream's live channel carries for ``p`` (a :class:`LiveFrame` as JSON text):
    encoded once by the publishing replica and forwarded as it is by every session."""
    body = LivePrediction(
        p.stream_id, p.t, rfc3339(p.t), p.dt, named_outputs(p.y, output_names), p.model,
        p.version, p.duplicate, p.reset, p.event_id, p.count,
        list(x) if x is not None else None,
    )  # fmt: skip
    return dumps(LiveFrame("prediction", p.model, body)).decode("utf-8")


@functools.lru_cache(maxsize=256)
def _frame_head_of(model: str) -> str:
    return _FRAME_HEAD + dumps(model).decode("utf-8") + ","


def live_frame(raw: str, model_filter: str | None) -> str | None:
    """A live-channel message as the WebSocket client receives it: the message itself (it is
    the frame), ``None`` when ``model_filter`` filters it out. A message in the earlier format
    (a replica not yet upgraded) is converted."""
    if raw.startswith(_FRAME_HEAD):
        if model_filter is None or raw.startswith(_frame_head_of(model_filter)):
            return raw
        return None
    return _earlier_frame(raw, model_filter)


def _earlier_frame(raw: str, model_filter: str | None) -> str | None:
    """The frame of a message in the format before :class:`LiveFrame` (keys ``stream_id, t,
    dt, outputs, model, version, duplicate, reset, event_id, count, x``), as replicas of an
    earlier release publish it during a rolling upgrade; ``None`` when filtered out or
    unreadable."""
    try:
        msg = _decoder.decode(raw)
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
    except (msgspec.DecodeError, ValueError, KeyError, TypeError, AttributeError, OSError):
        log.warning("unreadable live message dropped: %.200r", raw)
        return None
    return dumps({"type": "prediction", "prediction": prediction}).decode("utf-8")
