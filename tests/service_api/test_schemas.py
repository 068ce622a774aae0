"""The request parsing rules, as pure functions."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.api.errors import ErrorCode
from service.api.parsing import (
    FieldError,
    check_stream_id,
    parse_event,
    parse_features,
    parse_timestamp,
)
from service.engine.encode import rfc3339
from service.engine.registry import FeatureSpec

T0 = 1_714_564_800.0
SPEC = FeatureSpec(3, ("temp", "vib", "rpm"))


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("2024-05-01T12:00:00Z", T0),
        ("2024-05-01t12:00:00z", T0),
        ("2024-05-01 12:00:00Z", T0),
        ("2024-05-01T14:30:00+02:30", T0),
        ("2024-05-01T07:00:00-05:00", T0),
        ("2024-05-01T12:00:00.25Z", T0 + 0.25),
        ("2024-05-01T12:00:00.123456789Z", T0 + 0.123456789),
        ("1970-01-01T00:00:00Z", 0.0),
        ("2024-02-29T00:00:00Z", 1709164800.0),
    ],
)
def test_rfc3339(text: str, want: float) -> None:
    assert parse_timestamp(text) == pytest.approx(want, abs=1e-6)


def test_numbers_and_query_strings() -> None:
    assert parse_timestamp(T0) == T0
    assert parse_timestamp(1714564800) == T0
    assert parse_timestamp("1714564800.5", numeric_strings=True) == T0 + 0.5
    assert parse_timestamp("2024-05-01T14:00:00 02:00", numeric_strings=True) == T0
    with pytest.raises(FieldError):
        parse_timestamp("1714564800.5")  # in a body, a time is a number or RFC 3339


def test_rfc3339_output_round_trips() -> None:
    for t in (0.0, T0, T0 + 0.25, T0 + 0.000001, 253402300799.0):
        assert parse_timestamp(rfc3339(t)) == pytest.approx(t, abs=1e-6)
    assert rfc3339(T0 + 0.5) == "2024-05-01T12:00:00.500000Z"


def test_features_in_model_order() -> None:
    assert parse_features({"rpm": 3, "temp": 1, "vib": 2}, SPEC) == (1.0, 2.0, 3.0)
    assert parse_features([1, 2.5, -3], SPEC) == (1.0, 2.5, -3.0)
    with pytest.raises(FieldError) as info:
        parse_features({"temp": 1, "vib": 2}, SPEC)
    assert info.value.code is ErrorCode.MISSING_FEATURE
    assert info.value.details["missing"] == ["rpm"]


def test_event_errors_name_the_field() -> None:
    with pytest.raises(FieldError) as info:
        parse_event({"t": T0, "x": {"temp": 1, "vib": float("nan"), "rpm": 3}}, SPEC)
    assert (info.value.code, info.value.field) == (ErrorCode.NON_FINITE_VALUE, "x.vib")
    assert info.value.prefixed("events[4]").field == "events[4].x.vib"
    with pytest.raises(FieldError) as info:
        parse_event({"t": T0, "x": {"temp": 1, "vib": 2, "rpm": 3}}, FeatureSpec(3))
    assert info.value.code is ErrorCode.INVALID_EVENT  # unnamed features: a list only
    event = parse_event({"t": T0, "x": [1, 2, 3], "id": "e"}, SPEC)
    assert (event.t, event.x, event.id) == (T0, (1.0, 2.0, 3.0), "e")


@pytest.mark.parametrize("bad", ["", "a b", "a{b", "x}", "-a", "a" * 129, "a\ud800", 5, None])
def test_stream_ids(bad: object) -> None:
    pattern = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
    assert check_stream_id("pump-17:a.b_c", pattern) == "pump-17:a.b_c"
    with pytest.raises(FieldError) as info:
        check_stream_id(bad, pattern)
    assert info.value.code is ErrorCode.INVALID_STREAM_ID
    loose = re.compile(r".+")  # a permissive pattern still cannot break store keys
    if isinstance(bad, str) and bad and not bad.startswith("-") and len(bad) < 129:
        with pytest.raises(FieldError):
            check_stream_id(bad, loose)


@given(
    st.one_of(
        st.floats(min_value=0, max_value=253402300799.0, allow_nan=False),
        st.integers(0, 4 * 10**15).map(lambda k: k / 2e6),  # half microseconds: ties
        st.decimals(1.6e9, 1.8e9, places=7).map(float),
    )
)
def test_rfc3339_formats_as_datetime_does(t: float) -> None:
    import datetime as dt

    stamp = dt.datetime.fromtimestamp(t, tz=dt.timezone.utc).replace(tzinfo=None)
    assert rfc3339(t) == stamp.isoformat(timespec="microseconds") + "Z"
