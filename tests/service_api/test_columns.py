"""The columnar fast path (service.api.columns): it takes a body whole or leaves it to the exact
parser, and what it takes it reads exactly as the exact parser does."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from service.api.columns import decode_many_streams, decode_one_stream, validate
from service.api.parsing import FieldError, check_stream_id, parse_event
from service.engine.registry import FeatureSpec

SPEC = FeatureSpec(3, ("temp", "vib", "rpm"), max_abs=1e6)
PLAIN = FeatureSpec(3, None, max_abs=1e6)
STREAM_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
T0 = 1714564800.25


def one_stream(body: object, spec: FeatureSpec = SPEC, max_events: int = 1000) -> object:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    decoded = decode_one_stream(raw, max_events)
    return None if decoded is None else validate(decoded, spec, "s-1")


def many_streams(body: object, spec: FeatureSpec = SPEC) -> object:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    decoded = decode_many_streams(raw, 1000)
    return None if decoded is None else validate(decoded, spec, stream_id_re=STREAM_RE)


EVENTS = [
    {"t": T0, "x": [1, -2.5, 3e5]},
    {"t": "2024-05-01T12:00:01.5Z", "x": {"temp": 21.5, "vib": 0.0, "rpm": 1200}, "id": "a:1"},
    {"t": "2024-05-01T14:00:02+02:00", "x": [0.1, 0.2, 0.3], "id": None},
    {"t": 1714564803, "x": [-1e6, 1e6, 0], "id": "é-ü"},
]


@pytest.mark.parametrize("shape", ["list", "envelope"])
def test_a_valid_batch_reads_as_the_exact_parser_reads_it(shape: str) -> None:
    body = EVENTS if shape == "list" else {"events": EVENTS}
    cols = one_stream(body)
    assert cols is not None
    assert not cols.single
    want = [parse_event(e, SPEC) for e in EVENTS]
    assert cols.t.tolist() == [e.t for e in want]
    assert [tuple(r) for r in cols.x.tolist()] == [e.x for e in want]
    assert cols.ids == [e.id for e in want]
    assert cols.stream_ids == ["s-1"] * len(EVENTS)


def test_one_event_object_is_single() -> None:
    cols = one_stream(EVENTS[1])
    assert cols is not None
    assert cols.single
    assert cols.ids == ["a:1"]


def test_many_streams_reads_each_stream_id() -> None:
    items = [{**e, "stream_id": f"pump:{i}"} for i, e in enumerate(EVENTS)]
    cols = many_streams({"events": items})
    assert cols is not None
    assert cols.stream_ids == [f"pump:{i}" for i in range(len(EVENTS))]
    for sid in cols.stream_ids:
        check_stream_id(sid, STREAM_RE)
    assert np.array_equal(cols.t, [parse_event(e, SPEC).t for e in EVENTS])


@pytest.mark.parametrize(
    "raw",
    [
        b'{"t": 1714564800, "t": 1714564801, "x": [1, 2, 3]}',  # duplicate key
        b'[{"t": 1714564800, "x": [1, 2, 3], "x": [1, 2, 3]}]',
        b'[{"t": 1714564800, "x": [1, 2, 3], "id": "\\u003a", "id": "b"}]',  # escape hides a colon
        b'[{"t": 1714564800, "x": [NaN, 2, 3]}]',
        b'[{"t": 1714564800, "x": [1e400, 2, 3]}]',
        b'[{"t": 1714564800, "x": [1e7, 2, 3]}]',  # beyond max_abs
        b'[{"t": true, "x": [1, 2, 3]}]',
        b'[{"t": -1, "x": [1, 2, 3]}]',
        b'[{"t": 1e20, "x": [1, 2, 3]}]',
        b'[{"t": "2024-05-01 12:00:00", "x": [1, 2, 3]}]',  # no offset
        b'[{"t": "2024-02-30T00:00:00Z", "x": [1, 2, 3]}]',
        b'[{"t": 1714564800, "x": [1, 2]}]',
        b'[{"t": 1714564800, "x": [1, 2, 3]}, {"t": 1714564801, "x": [1, 2]}]',
        b'[{"t": 1714564800, "x": {"temp": 1, "vib": 2}}]',
        b'[{"t": 1714564800, "x": {"temp": 1, "vib": 2, "rpm": 3, "extra": 4}}]',
        b'[{"t": 1714564800, "x": [1, 2, 3], "id": ""}]',
        b'[{"t": 1714564800, "x": [1, 2, 3], "other": 1}]',
        b'[{"t": 1714564800, "x": [true, 2, 3]}]',
        b"[]",
        b'{"events": []}',
        b'{"events": [], "more": 1}',
        b"[1, 2]",
        b"not json",
    ],
)
def test_anything_unusual_is_left_to_the_exact_parser(raw: bytes) -> None:
    assert one_stream(raw) is None


def test_named_features_need_a_model_that_names_them() -> None:
    assert one_stream([EVENTS[1]], PLAIN) is None
    assert one_stream([EVENTS[0]], PLAIN) is not None


def test_too_many_events_are_left_to_the_exact_parser() -> None:
    assert one_stream(EVENTS, max_events=len(EVENTS)) is not None
    assert one_stream(EVENTS, max_events=len(EVENTS) - 1) is None


@pytest.mark.parametrize("sid", ["bad id", "{x}", "", "-lead", 7])
def test_invalid_stream_ids_are_left_to_the_exact_parser(sid: object) -> None:
    with pytest.raises(FieldError):
        check_stream_id(sid, STREAM_RE)
    assert many_streams([{**EVENTS[0], "stream_id": sid}]) is None


def test_a_duplicate_key_in_a_multi_stream_item_is_caught() -> None:
    raw = b'[{"stream_id": "a", "stream_id": "b", "t": 1714564800, "x": [1, 2, 3]}]'
    assert many_streams(raw) is None
    assert many_streams(raw.replace(b'"stream_id": "a", ', b"")) is not None


def test_escaped_text_is_read_as_the_exact_parser_reads_it() -> None:
    raw = json.dumps([{"t": T0, "x": [1, 2, 3], "id": "caf\u00e9 \u2603"}], ensure_ascii=True)
    assert "\\u00e9" in raw
    cols = one_stream(raw.encode())
    assert cols is not None
    assert cols.ids == ["caf\u00e9 \u2603"]
    assert one_stream(raw.replace("\\u00e9", "\\ud800").encode()) is None  # a lone surrogate
