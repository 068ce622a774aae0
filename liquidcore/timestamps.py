"""Timestamps written as text -> float64 seconds since the Unix epoch: the one strict parser
that the library and the service share.

Two grammars, both ASCII only (Python's own rules are wider than either: ``float()`` takes
full-width and other Unicode digits, ``_`` between digits, surrounding whitespace, ``nan`` and
``inf``; ``datetime.fromisoformat`` takes dates without a time, week dates and basic format):

- **Epoch seconds**: the JSON number grammar (RFC 8259 §6): an optional ``-``, an integer part
  without leading zeros, an optional fraction and an optional exponent, e.g. ``1767225600``,
  ``1767225600.25``, ``1.7672256e9``. No ``+`` sign, no ``_``, no whitespace, no ``nan``/``inf``;
  a number that overflows float64 (``1e400``) is refused too.
- **RFC 3339** date-time (§5.6) with a required offset: ``YYYY-MM-DDTHH:MM:SS[.f]Z`` or
  ``±HH:MM``; ``T``/``Z`` in either case, a space in place of ``T`` (the RFC's NOTE allows it);
  1 to 9 fraction digits. Leap seconds (``:60``) are refused: epoch seconds have none.

Every function raises :class:`ValueError` whose message names the problem. Ranges (which times
an application accepts) are the caller's rule, not the grammar's. Each parse is a length check,
an ASCII check and one match of a compiled regular expression without nested repetition, so the
cost is linear in the (bounded) input.
"""

from __future__ import annotations

import datetime as _dt
import math
import re

__all__ = [
    "MAX_TIMESTAMP_CHARS",
    "parse_epoch_seconds",
    "parse_rfc3339",
    "parse_timestamp_text",
]

# The longest RFC 3339 form is 35 characters; a decimal number this long is already exact.
MAX_TIMESTAMP_CHARS = 64

_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})"
    r"(\.[0-9]{1,9})?(?:([Zz])|([+-])([0-9]{2}):([0-9]{2}))"
)
_EPOCH_ORDINAL = _dt.date(1970, 1, 1).toordinal()
_SHAPES = (
    "epoch seconds (a JSON number such as 1767225600.25) or an RFC 3339 date-time with an "
    "offset (such as 2026-01-01T00:00:00.25Z)"
)


def _checked_text(text: str) -> str:
    if not isinstance(text, str):
        raise ValueError(f"a timestamp must be a string here; got {type(text).__name__}")
    if len(text) > MAX_TIMESTAMP_CHARS:
        raise ValueError(f"a timestamp has at most {MAX_TIMESTAMP_CHARS} characters")
    if not text.isascii():
        raise ValueError(
            "a timestamp is ASCII only (full-width or other non-ASCII digits are not accepted)"
        )
    return text


def _number(text: str) -> float | None:
    """``text`` as epoch seconds if it is a JSON number (``None`` if it is not one)."""
    if _NUMBER.fullmatch(text) is None:
        return None
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"timestamp {text!r} is out of range (it overflows a float64)")
    return value


def _rfc3339(text: str) -> float | None:
    """``text`` as epoch seconds if it has the RFC 3339 shape (``None`` if it has not)."""
    m = _RFC3339.fullmatch(text)
    if m is None:
        return None
    year_s, month_s, day_s, hour_s, minute_s, second_s, fraction, zulu, sign, oh_s, om_s = (
        m.groups()
    )
    hour, minute, second = int(hour_s), int(minute_s), int(second_s)
    try:
        days = _dt.date(int(year_s), int(month_s), int(day_s)).toordinal() - _EPOCH_ORDINAL
    except ValueError as exc:
        raise ValueError(f"timestamp {text!r} is not a valid date-time: {exc}") from None
    if hour > 23 or minute > 59 or second > 59:
        raise ValueError(
            f"timestamp {text!r} is not a valid date-time: hours 00-23, minutes and seconds "
            "00-59 (no leap seconds)"
        )
    offset = 0
    if zulu is None:
        oh, om = int(oh_s), int(om_s)
        if oh > 23 or om > 59:
            raise ValueError(f"timestamp {text!r} has an invalid UTC offset")
        offset = (oh * 3600 + om * 60) * (1 if sign == "+" else -1)
    whole = days * 86400 + hour * 3600 + minute * 60 + second - offset
    # Whole seconds are exact integers; the fraction is added once, in float64.
    return float(whole) + float(fraction) if fraction else float(whole)


def parse_epoch_seconds(text: str) -> float:
    """Epoch seconds written as a JSON number (see the module docstring) -> float64."""
    value = _number(_checked_text(text))
    if value is None:
        raise ValueError(
            f"timestamp {text!r} is not a plain number: write epoch seconds as a JSON number "
            "(digits, an optional '-', '.', and exponent; no '+', '_', spaces, nan or inf)"
        )
    return value


def parse_rfc3339(text: str) -> float:
    """An RFC 3339 date-time with an offset (see the module docstring) -> epoch seconds."""
    value = _rfc3339(_checked_text(text))
    if value is None:
        raise ValueError(
            f"timestamp {text!r} is not an RFC 3339 date-time with an offset, such as "
            "2026-01-01T00:00:00.25Z or 2026-01-01T01:00:00+01:00"
        )
    return value


def parse_timestamp_text(text: str) -> float:
    """Either grammar: epoch seconds as a JSON number, or an RFC 3339 date-time."""
    checked = _checked_text(text)
    value = _number(checked)
    if value is None:
        value = _rfc3339(checked)
    if value is None:
        raise ValueError(f"timestamp {text!r} must be {_SHAPES}")
    return value
