"""Live messages are the WebSocket frame itself (service.engine.encode): published once, forwarded
as they are, filtered by model on a prefix; a message in the earlier format still converts."""

from __future__ import annotations

import dataclasses
import json

import msgspec

from service.engine.encode import live_frame, live_message, prediction_body
from service.engine.types import Prediction

P = Prediction(
    stream_id="pump-7",
    t=1_767_225_600.25,
    dt=0.5,
    y=(0.25, float("nan")),
    model="pump",
    version="abc123",
    duplicate=False,
    reset="first_event",
    event_id="e1",
    count=3,
)


def test_the_message_is_the_frame_with_the_api_prediction_and_the_input() -> None:
    raw = live_message(P, (1.0, 2.0), ["flow", "temp"])
    frame = json.loads(raw)
    assert list(frame) == ["type", "model", "prediction"]
    assert frame["type"] == "prediction"
    assert frame["model"] == "pump"
    api = msgspec.to_builtins(prediction_body(P, ["flow", "temp"]))
    assert frame["prediction"] == {**api, "x": [1.0, 2.0]}
    assert frame["prediction"]["outputs"] == {"flow": 0.25, "temp": None}  # as HTTP: no NaN
    assert live_frame(raw, None) is raw  # forwarded without decoding


def test_a_model_filter_reads_the_prefix() -> None:
    raw = live_message(P, None, None)
    assert live_frame(raw, "pump") is raw
    assert live_frame(raw, "pum") is None
    assert live_frame(raw, "pump-2") is None
    odd = live_message(dataclasses.replace(P, model='we"ird/é'), None, None)
    assert live_frame(odd, 'we"ird/é') is odd
    assert live_frame(odd, "we") is None


def test_a_message_of_the_earlier_format_is_converted() -> None:
    earlier = json.dumps(
        {
            "stream_id": "pump-7", "t": P.t, "dt": 0.5, "outputs": [0.25, None],
            "model": "pump", "version": "abc123", "duplicate": False, "reset": None,
            "event_id": None, "count": 3, "x": [1.0, 2.0],
        }
    )  # fmt: skip
    got = live_frame(earlier, None)
    assert got is not None
    frame = json.loads(got)
    assert frame["type"] == "prediction"
    assert frame["prediction"]["time"] == "2026-01-01T00:00:00.250000Z"
    assert frame["prediction"]["x"] == [1.0, 2.0]
    assert live_frame(earlier, "other") is None
    assert live_frame("not json", None) is None
