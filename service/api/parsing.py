"""Request parsing: strict, with a machine code for every fault.

Requests are parsed by hand from the raw JSON (so every fault gets its own machine code and
nothing reaches the engine before the whole request is valid); the pydantic models of
:mod:`service.api.schemas` document the same shapes in OpenAPI and type the responses.

Time rule: every timestamp is float64 seconds since the Unix epoch. A request may give it as a
JSON number or as an RFC 3339 string (a query parameter also as epoch seconds written as a JSON
number); both must be finite and within ``[MIN_TIMESTAMP, MAX_TIMESTAMP)`` (1970-01-01 to the
end of year 9999). Strings follow the strict ASCII grammars of :mod:`liquidcore.timestamps`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from liquidcore import timestamps
from service.api.errors import ErrorCode
from service.engine.registry import FLOAT32_MAX, FeatureSpec

MIN_TIMESTAMP = 0.0
MAX_TIMESTAMP = 253402300800.0  # 10000-01-01T00:00:00Z, exclusive
MAX_EVENT_ID_CHARS = 256
MAX_REQUEST_ID_CHARS = 128

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


# -- features --------------------------------------------------------------------------------
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


_KEY_UNSAFE = re.compile(r"[\s{}]")  # would break the store key's hash tag (service.store.keys)


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
