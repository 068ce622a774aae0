"""The strict timestamp grammars of ``liquidcore.timestamps``: what they take, exactly, and what
they refuse (with a message naming the problem)."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from liquidcore.timestamps import (
    MAX_TIMESTAMP_CHARS,
    parse_epoch_seconds,
    parse_rfc3339,
    parse_timestamp_text,
)

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("1767225600", T0),
        ("1767225600.25", T0 + 0.25),
        ("1.7672256e9", T0),
        ("17672256E2", T0),
        ("1767225600e+0", T0),
        ("0", 0.0),
        ("-1.5", -1.5),  # a grammar, not a range: the caller decides which times it accepts
    ],
)
def test_epoch_seconds(text: str, want: float) -> None:
    assert parse_epoch_seconds(text) == want
    assert parse_timestamp_text(text) == want


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("2026-01-01T00:00:00Z", T0),
        ("2026-01-01t00:00:00z", T0),
        ("2026-01-01 00:00:00Z", T0),
        ("2026-01-01T01:30:00+01:30", T0),
        ("2025-12-31T19:00:00-05:00", T0),
        ("2026-01-01T00:00:00.25Z", T0 + 0.25),
        ("2026-01-01T00:00:00.123456789Z", T0 + 0.123456789),
        ("1970-01-01T00:00:00-00:00", 0.0),
        ("2024-02-29T00:00:00Z", 1709164800.0),
        ("9999-12-31T23:59:59Z", 253402300799.0),
    ],
)
def test_rfc3339(text: str, want: float) -> None:
    assert parse_rfc3339(text) == pytest.approx(want, abs=1e-6)
    assert parse_timestamp_text(text) == pytest.approx(want, abs=1e-6)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("１７６７２２５６００", "ASCII"),  # full-width digits: float() takes them
        ("١٧٦٧٢٢٥٦٠٠", "ASCII"),  # Arabic-Indic digits
        ("1_767_225_700", "not a plain number"),  # float() takes underscores
        ("+1767225600", "not a plain number"),
        (" 1767225600", "not a plain number"),
        ("1767225600\n", "not a plain number"),
        ("nan", "not a plain number"),
        ("inf", "not a plain number"),
        ("-Infinity", "not a plain number"),
        ("0x10", "not a plain number"),
        ("01767225600", "not a plain number"),
        (".5", "not a plain number"),
        ("5.", "not a plain number"),
        ("1e", "not a plain number"),
        ("", "not a plain number"),
        ("1e400", "overflows"),
        ("9" * 65, f"at most {MAX_TIMESTAMP_CHARS}"),
    ],
)
def test_epoch_seconds_refused(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_epoch_seconds(text)
    with pytest.raises(ValueError):
        parse_timestamp_text(text)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("２０２６-01-01T00:00:00Z", "ASCII"),
        ("2026-01-01T00:00:00", "not an RFC 3339"),  # no offset
        ("2026-01-01", "not an RFC 3339"),
        ("2026-W01-1T00:00:00Z", "not an RFC 3339"),
        ("20260101T000000Z", "not an RFC 3339"),
        ("2026-01-01T00:00:00Z\n", "not an RFC 3339"),
        (" 2026-01-01T00:00:00Z", "not an RFC 3339"),
        ("2026-01-01T00:00:00.Z", "not an RFC 3339"),
        ("2026-01-01T00:00:00.1234567890Z", "not an RFC 3339"),
        ("2026-01-01T00:00:00+0100", "not an RFC 3339"),
        ("2026-02-30T00:00:00Z", "not a valid date-time"),
        ("2026-01-01T24:00:00Z", "not a valid date-time"),
        ("2026-12-31T23:59:60Z", "not a valid date-time"),  # leap second
        ("2026-01-01T00:00:00+24:00", "invalid UTC offset"),
        ("2026-01-01T00:00:00+01:60", "invalid UTC offset"),
    ],
)
def test_rfc3339_refused(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_rfc3339(text)
    with pytest.raises(ValueError):
        parse_timestamp_text(text)


def test_not_a_string_is_refused() -> None:
    with pytest.raises(ValueError, match="must be a string"):
        parse_timestamp_text(1767225600)  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(
    st.datetimes(
        min_value=dt.datetime(1970, 1, 2),
        max_value=dt.datetime(9999, 12, 30),
        timezones=st.timezones(),
    )
)
def test_rfc3339_agrees_with_datetime(when: dt.datetime) -> None:
    text = when.isoformat(timespec="microseconds")
    if when.utcoffset() is None or (when.utcoffset() or dt.timedelta()).seconds % 60:
        return  # RFC 3339 offsets are whole minutes
    assert parse_rfc3339(text) == pytest.approx(when.timestamp(), abs=1e-6)


@settings(max_examples=200, deadline=None)
@given(st.floats(min_value=0, max_value=1e12, allow_nan=False))
def test_epoch_seconds_round_trip_repr(t: float) -> None:
    assert parse_epoch_seconds(repr(t).replace("e+", "e")) == t
