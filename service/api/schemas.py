"""The API's response models and the request shapes as OpenAPI documents them (pydantic).

Requests are parsed by :mod:`service.api.parsing`, not by these models: they give OpenAPI its
schemas and type the responses.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from service.api.parsing import MAX_EVENT_ID_CHARS
from service.store.reasons import ResetReason

# -- OpenAPI / response models ---------------------------------------------------------------
_T_DESCRIPTION = (
    "Event time: seconds since the Unix epoch (a number) or an RFC 3339 string with an offset."
)
_X_DESCRIPTION = (
    "Features: a list in the model's feature order, or an object {feature name: number} when the "
    "model names its features. Values must be finite."
)
_ID_DESCRIPTION = (
    "Optional event id. A retried event whose id is among the stream's recent ids is answered "
    "with the original prediction, marked duplicate, and not applied again."
)


class EventIn(BaseModel):
    """One timestamped event of a stream."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"t": 1714564800.25, "x": [0.1, -0.3, 2.0], "id": "dev7-000123"},
                {"t": "2024-05-01T12:00:00.250Z", "x": {"temp": 21.5, "rpm": 1200.0}},
            ]
        },
    )

    t: float | str = Field(description=_T_DESCRIPTION)
    x: list[float] | dict[str, float] = Field(description=_X_DESCRIPTION)
    id: str | None = Field(default=None, description=_ID_DESCRIPTION, max_length=MAX_EVENT_ID_CHARS)


class EventBatchIn(BaseModel):
    """Several events of one stream, in time order."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "events": [
                        {"t": 1714564800.0, "x": [0.1, 0.2]},
                        {"t": 1714564800.7, "x": [0.3, 0.1]},
                    ]
                }
            ]
        },
    )

    events: list[EventIn]


class StreamEventIn(EventIn):
    """One event of the named stream (multi-stream requests)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"stream_id": "pump-17", "t": 1714564800.25, "x": [0.1, -0.3, 2.0]}]
        },
    )

    stream_id: str = Field(description="The stream the event belongs to.")


class MultiEventBatchIn(BaseModel):
    """Events of many streams. Each stream's events are applied in the order given."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "events": [
                        {"stream_id": "pump-17", "t": 1714564800.0, "x": [0.1, 0.2]},
                        {"stream_id": "pump-18", "t": 1714564800.1, "x": [0.0, 0.4], "id": "a1"},
                    ]
                }
            ]
        },
    )

    events: list[StreamEventIn]


class PredictionOut(BaseModel):
    """The model's prediction after applying one event."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "stream_id": "pump-17",
                    "t": 1714564800.25,
                    "time": "2024-05-01T12:00:00.250000Z",
                    "dt": 0.25,
                    "outputs": {"failure_risk": 0.031},
                    "model": "demo",
                    "version": "3f2a9c0d1e4b5a69",
                    "duplicate": False,
                    "reset": None,
                    "id": "dev7-000123",
                    "count": 42,
                }
            ]
        }
    )

    stream_id: str
    t: float = Field(description="Event time, epoch seconds.")
    time: str = Field(description="Event time, RFC 3339 (UTC).")
    dt: float = Field(description="Elapsed time Δt (seconds) the state was advanced by.")
    outputs: dict[str, float] | list[float] = Field(
        description="Model outputs, by name when the model names them."
    )
    model: str
    version: str = Field(description="Content hash of the model that made the prediction.")
    duplicate: bool = Field(description="A retry of an already applied event (not re-applied).")
    reset: ResetReason | None = Field(
        description="Why the state started afresh at this event, if it did."
    )
    id: str | None = Field(description="The event id, when one was given.")
    count: int = Field(description="Events applied to the stream so far.")


class ErrorDetail(BaseModel):
    code: str = Field(description="Machine-readable error code.", examples=["out_of_order"])
    message: str = Field(description="What went wrong and what to do.")
    details: Any = Field(default=None, description="Structured context (field, expected ...).")


class ErrorOut(BaseModel):
    """The body of every error response."""

    error: ErrorDetail


class ItemResult(BaseModel):
    """Result of one event of a batch: a prediction (status 200) or an error."""

    index: int = Field(description="Position of the event in the request.")
    stream_id: str | None
    status: int = Field(description="200, or the status the event alone would have got.")
    prediction: PredictionOut | None = None
    error: ErrorDetail | None = None


class BatchResultsOut(BaseModel):
    """Per-event results, in request order."""

    results: list[ItemResult]
    applied: int = Field(description="Events applied (new state committed).")
    duplicates: int = Field(description="Events recognised as retries.")
    failed: int = Field(description="Events rejected (out of order or invalid).")


class StreamInfoOut(BaseModel):
    """A stream's metadata."""

    stream_id: str
    model: str
    version: str
    last_t: float = Field(description="Time of the last applied event, epoch seconds.")
    last_time: str = Field(description="Time of the last applied event, RFC 3339.")
    count: int
    created: str = Field(description="When the stream's state was created (RFC 3339).")
    updated: str = Field(description="When the state was last written (RFC 3339).")
    expires_at: str | None = Field(description="When the idle state expires (RFC 3339).")


class RecentIn(BaseModel):
    """An applied event of the dedupe window with the prediction that was returned for it."""

    id: str
    t: float
    dt: float
    y: list[float] = Field(description="Presented outputs, in model order.")
    reset: ResetReason | None = None
    count: int


class StateIn(BaseModel):
    """A stream's exported state, as ``GET .../state`` returns it and ``PUT .../state`` takes it.

    ``h`` and ``x_last`` are float32 values written as JSON numbers (exact: they round-trip).
    """

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "stream_id": "pump-17",
                    "model": "demo",
                    "version": "3f2a9c0d1e4b5a69",
                    "h": [0.12, -0.5, 0.03],
                    "x_last": [0.1, 0.2],
                    "last_t": 1714564800.25,
                    "count": 42,
                    "created": 1714560000.0,
                    "updated": 1714564800.3,
                    "recent": [
                        {
                            "id": "e-41",
                            "t": 1714564800.25,
                            "dt": 0.5,
                            "y": [0.03],
                            "reset": None,
                            "count": 42,
                        }
                    ],
                }
            ]
        },
    )

    stream_id: str | None = Field(default=None, description="Informational; the path names it.")
    model: str | None = Field(default=None, description="Model name (must be the served one).")
    version: str = Field(description="Model version the state belongs to.")
    h: list[float] = Field(description="The hidden state (float32 values).")
    x_last: list[float] = Field(description="The last input (held for predictions ahead).")
    last_t: float = Field(description="Time of the last applied event, epoch seconds.")
    count: int = Field(description="Events applied so far.")
    created: float | None = None
    updated: float | None = None
    recent: list[RecentIn] = Field(
        default_factory=list, description="Dedupe window: recent event ids with predictions."
    )


class ModelOut(BaseModel):
    """A served model."""

    name: str
    version: str
    default: bool
    input_size: int
    inputs: list[str] | None = Field(description="Feature names, in order (None: unnamed).")
    output_size: int
    outputs: list[str] | None = Field(description="Output names, in order (None: unnamed).")
    state_size: int
    time_unit: float = Field(description="Seconds per model time unit.")
    default_dt: float = Field(description="Δt (seconds) of a stream's first event.")


class ModelsOut(BaseModel):
    models: list[ModelOut]
    default: str


class HealthOut(BaseModel):
    status: str


class ReadyOut(BaseModel):
    status: Literal["ready", "not_ready"]
    checks: dict[str, bool]
