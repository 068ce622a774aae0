"""The API's data: request parsing (strict, with error codes) and response models.

Requests are parsed by hand from the raw JSON (so every fault gets its own machine code and
nothing reaches the engine before the whole request is valid); the pydantic models below
document the same shapes in OpenAPI and type the responses.

Time rule: every timestamp is float64 seconds since the Unix epoch. A request may give it as a
JSON number or as an RFC 3339 string (a query parameter also as epoch seconds written as a JSON
number); both must be finite and within ``[MIN_TIMESTAMP, MAX_TIMESTAMP)`` (1970-01-01 to the
end of year 9999). Strings follow the strict ASCII grammars of :mod:`liquidcore.timestamps`.
"""

from __future__ import annotations

import datetime as _dt
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from liquidcore import timestamps
from service.errors import ErrorCode

MIN_TIMESTAMP = 0.0
MAX_TIMESTAMP = 253402300800.0  # 10000-01-01T00:00:00Z, exclusive
MAX_EVENT_ID_CHARS = 256
MAX_REQUEST_ID_CHARS = 128
# Features and states are float32 in the model: a finite float64 beyond this would become inf.
FLOAT32_MAX = 3.4028234663852886e38

_QUERY_OFFSET = re.compile(r"(?<=[0-9]) ([0-9]{2}:[0-9]{2})$")
_EVENT_KEYS = frozenset({"t", "x", "id"})


class FieldError(Exception):
    """One invalid part of a request: its code, message and JSON path (``events[2].x``)."""

    def __init__(self, code: ErrorCode, message: str, field: str, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        self.details = details

    def detail(self) -> dict[str, Any]:
        return {"field": self.field, **self.details}

    def prefixed(self, prefix: str) -> FieldError:
        field = f"{prefix}.{self.field}" if self.field else prefix
        return FieldError(self.code, self.message, field, **self.details)


# -- timestamps ------------------------------------------------------------------------------
def _check_range(t: float, field: str) -> float:
    if not math.isfinite(t):
        raise FieldError(ErrorCode.INVALID_TIMESTAMP, f"{field} must be finite", field)
    if not MIN_TIMESTAMP <= t < MAX_TIMESTAMP:
        raise FieldError(
            ErrorCode.INVALID_TIMESTAMP,
            f"{field} must be seconds since the Unix epoch between 0 (1970-01-01) and "
            f"{MAX_TIMESTAMP:.0f} (year 10000); got {t!r}",
            field,
        )
    return t


def _text_time(parse: Callable[[str], float], text: str, field: str) -> float:
    try:
        return _check_range(parse(text), field)
    except ValueError as exc:
        raise FieldError(ErrorCode.INVALID_TIMESTAMP, str(exc), field) from None


def parse_rfc3339(text: str, field: str = "t") -> float:
    """An RFC 3339 timestamp (offset required, up to nanoseconds) -> epoch seconds, by the
    library's strict ASCII grammar (:mod:`liquidcore.timestamps`)."""
    return _text_time(timestamps.parse_rfc3339, text, field)


def parse_timestamp(value: Any, field: str = "t", *, numeric_strings: bool = False) -> float:
    """A request timestamp (JSON number, or RFC 3339 string) -> float64 epoch seconds.

    ``numeric_strings`` (query parameters): a string may also be epoch seconds, written as a
    JSON number. Strings are never trimmed or read by Python's own number rules, so full-width
    digits, ``_``, ``+``, whitespace, ``nan`` and ``inf`` are refused."""
    if isinstance(value, bool) or value is None:
        raise FieldError(
            ErrorCode.INVALID_TIMESTAMP, f"{field} must be a number or an RFC 3339 string", field
        )
    if isinstance(value, int):
        try:
            return _check_range(float(value), field)
        except OverflowError:
            raise FieldError(
                ErrorCode.INVALID_TIMESTAMP, f"{field} is out of range", field
            ) from None
    if isinstance(value, float):
        return _check_range(value, field)
    if isinstance(value, str):
        if numeric_strings:  # a query parameter: an unescaped "+" of an offset arrives as " "
            return _text_time(
                timestamps.parse_timestamp_text, _QUERY_OFFSET.sub(r"+\1", value), field
            )
        return parse_rfc3339(value, field)
    raise FieldError(
        ErrorCode.INVALID_TIMESTAMP, f"{field} must be a number or an RFC 3339 string", field
    )


def rfc3339(t: float) -> str:
    """Epoch seconds -> ``YYYY-MM-DDTHH:MM:SS.ffffffZ``."""
    stamp = _dt.datetime.fromtimestamp(t, tz=_dt.timezone.utc)
    return stamp.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


# -- features --------------------------------------------------------------------------------
@dataclass(frozen=True)
class FeatureSpec:
    """What a model takes as ``x``: its size, the feature names when it names them, and the
    largest magnitude a feature may have (``max_abs``; beyond it: ``value_out_of_range``)."""

    size: int
    names: tuple[str, ...] | None = None
    max_abs: float = FLOAT32_MAX

    @classmethod
    def of(cls, model: Any, max_abs: float = FLOAT32_MAX) -> FeatureSpec:
        names = getattr(model, "feature_names", None)
        return cls(int(model.input_size), tuple(names) if names else None, max_abs)


def _number(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FieldError(
            ErrorCode.INVALID_EVENT, f"{field} must be a number; got {type(value).__name__}", field
        )
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not (math.isfinite(number) and abs(number) <= FLOAT32_MAX):
        raise FieldError(
            ErrorCode.NON_FINITE_VALUE,
            f"{field} must be a finite number within the float32 range (NaN, infinities and "
            "numbers such as 1e400 or 1e39 are refused)",
            field,
        )
    return number


def parse_number(value: Any, field: str) -> float:
    """A finite JSON number within the float32 range."""
    return _number(value, field)


def _feature(value: Any, field: str, max_abs: float) -> float:
    number = _number(value, field)
    if abs(number) > max_abs:
        raise FieldError(
            ErrorCode.VALUE_OUT_OF_RANGE,
            f"{field} is {number:g}; features must be at most {max_abs:g} in magnitude (the "
            "service's max_abs_input: values this far out only drive a model out of range)",
            field,
            max_abs=max_abs,
        )
    return number


def parse_features(value: Any, spec: FeatureSpec, field: str = "x") -> tuple[float, ...]:
    """``x`` as a list in model order or a ``{name: value}`` object -> values in model order."""
    if isinstance(value, list):
        if len(value) != spec.size:
            raise FieldError(
                ErrorCode.WRONG_FEATURE_COUNT,
                f"{field} has {len(value)} values but the model takes {spec.size}"
                + (f" ({', '.join(spec.names)})" if spec.names else ""),
                field,
                expected=spec.size,
                got=len(value),
            )
        return tuple(_feature(v, f"{field}[{i}]", spec.max_abs) for i, v in enumerate(value))
    if isinstance(value, dict):
        if spec.names is None:
            raise FieldError(
                ErrorCode.INVALID_EVENT,
                f"the model does not name its features: send {field} as a list of {spec.size} "
                "numbers",
                field,
            )
        unknown = [k for k in value if k not in spec.names]
        if unknown:
            raise FieldError(
                ErrorCode.UNKNOWN_FEATURE,
                f"{field} has unknown feature(s) {', '.join(map(repr, unknown[:10]))}; the model "
                f"takes {', '.join(spec.names)}",
                field,
                unknown=unknown[:50],
                expected=list(spec.names),
            )
        missing = [n for n in spec.names if n not in value]
        if missing:
            raise FieldError(
                ErrorCode.MISSING_FEATURE,
                f"{field} lacks feature(s) {', '.join(missing)}",
                field,
                missing=missing,
                expected=list(spec.names),
            )
        return tuple(_feature(value[n], f"{field}.{n}", spec.max_abs) for n in spec.names)
    raise FieldError(
        ErrorCode.INVALID_EVENT,
        f"{field} must be a list of {spec.size} numbers"
        + (" or an object {feature name: number}" if spec.names else ""),
        field,
    )


# -- events ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ParsedEvent:
    t: float
    x: tuple[float, ...]
    id: str | None


def is_utf8(text: str) -> bool:
    """False for strings with lone surrogates (JSON can spell them; UTF-8 cannot)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def parse_event_id(value: Any, field: str = "id") -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= MAX_EVENT_ID_CHARS or not is_utf8(value):
        raise FieldError(
            ErrorCode.INVALID_EVENT,
            f"{field} must be a string of 1 to {MAX_EVENT_ID_CHARS} characters (valid Unicode)",
            field,
        )
    return value


def parse_event(
    obj: Any, spec: FeatureSpec, *, extra_keys: frozenset[str] = frozenset()
) -> ParsedEvent:
    """One event object ``{"t", "x", "id"?}`` (plus ``extra_keys`` the caller handles)."""
    if not isinstance(obj, dict):
        raise FieldError(
            ErrorCode.INVALID_EVENT, 'an event must be an object {"t": ..., "x": [...]}', ""
        )
    unknown = [k for k in obj if k not in _EVENT_KEYS and k not in extra_keys]
    if unknown:
        raise FieldError(
            ErrorCode.INVALID_EVENT,
            f"unknown event field(s) {', '.join(map(repr, unknown[:10]))}; an event has t, x "
            "and optionally id",
            unknown[0] if isinstance(unknown[0], str) else "",
        )
    for key in ("t", "x"):
        if key not in obj:
            raise FieldError(ErrorCode.INVALID_EVENT, f"an event needs {key!r}", key)
    return ParsedEvent(
        t=parse_timestamp(obj["t"], "t"),
        x=parse_features(obj["x"], spec),
        id=parse_event_id(obj.get("id")),
    )


_KEY_UNSAFE = re.compile(r"[\s{}]")  # would break the store key's hash tag (service.keys)


def check_stream_id(value: Any, pattern: re.Pattern[str], field: str = "stream_id") -> str:
    """The stream id if it matches ``pattern`` (and is usable in a store key), else an error."""
    if (
        not isinstance(value, str)
        or pattern.fullmatch(value) is None
        or _KEY_UNSAFE.search(value) is not None
        or not is_utf8(value)
    ):
        shown = value if isinstance(value, str) and len(value) <= 64 else None
        raise FieldError(
            ErrorCode.INVALID_STREAM_ID,
            f"{field} must match {pattern.pattern}"
            + (f"; got {shown!r}" if shown is not None else ""),
            field,
        )
    return value


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


ResetReason = Literal["first_event", "gap", "model_change", "expired"]


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


def named_outputs(
    y: Sequence[float], names: Sequence[str] | None
) -> dict[str, float | None] | list[float | None]:
    """Outputs by name when the model names them; a non-finite value (never expected of a
    bounded model) becomes ``null`` rather than invalid JSON."""
    values = [float(v) if math.isfinite(v) else None for v in y]
    if names:
        return dict(zip(names, values, strict=False))
    return values
