"""The events routes' other body formats: NDJSON (one event per line) and MessagePack.

Each format must give the JSON answer for the same events (same predictions, same per-item
results), the same 4xx codes and bodies for the same bad input, and leave state untouched
when it refuses a request. Other content types stay 415.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from service.app import create_app
from tests.service_api.conftest import make_client

T0 = 1_714_564_800.0
JSON = "application/json"
NDJSON = "application/x-ndjson"
MSGPACK = "application/msgpack"


def _ndjson(items: list[Any]) -> bytes:
    return b"".join(json.dumps(item).encode() + b"\n" for item in items)


def encode(body: Any, media: str) -> bytes:
    """``body`` in ``media``; NDJSON takes the list of events (or the envelope's list)."""
    if media == NDJSON:
        items = body["events"] if isinstance(body, dict) and "events" in body else body
        return _ndjson(items if isinstance(items, list) else [items])
    if media == MSGPACK:
        return msgspec.msgpack.encode(body)
    return json.dumps(body).encode()


def post(client: Any, url: str, body: Any, media: str) -> Any:
    return client.post(url, content=encode(body, media), headers={"content-type": media})


def without_stream(answer: Any, stream_id: str) -> Any:
    """The answer with this test's stream id replaced (formats run on their own streams)."""
    return json.loads(json.dumps(answer).replace(json.dumps(stream_id), '"S"'))


@pytest.mark.parametrize("media", [NDJSON, MSGPACK])
def test_one_stream_answers_equal_json(client: Any, media: str) -> None:
    events = [{"t": T0 + i, "x": [1.0, 2.0, float(i)], "id": f"e{i}"} for i in range(5)]
    named = [{"t": "2024-05-01T12:00:10Z", "x": {"temp": 1, "vib": 2, "rpm": 3}}]
    for stream, fmt in (("j", JSON), ("o", media)):
        r = post(client, f"/v1/streams/{stream}/events", {"events": events}, fmt)
        assert r.status_code == 200, r.text
        r2 = post(client, f"/v1/streams/{stream}/events", named, fmt)
        assert r2.status_code == 200, r2.text
        if fmt == JSON:
            want = without_stream([r.json(), r2.json()], "j")
        else:
            assert without_stream([r.json(), r2.json()], "o") == want
    # stored: the same state
    assert client.get("/v1/streams/o").json()["count"] == 6
    assert (
        client.get("/v1/streams/o/state").json()["h"]
        == client.get("/v1/streams/j/state").json()["h"]
    )
    # a retry in the other format is a duplicate with the original answer
    again = post(client, "/v1/streams/j/events", events[:1], media).json()["results"][0]
    assert again["prediction"]["duplicate"] is True


def test_messagepack_single_event_is_answered_with_a_prediction(client: Any) -> None:
    r = post(client, "/v1/streams/m1/events", {"t": T0, "x": [1, 2, 3]}, MSGPACK)
    j = post(client, "/v1/streams/j1/events", {"t": T0, "x": [1, 2, 3]}, JSON)
    assert r.status_code == j.status_code == 200
    assert without_stream(r.json(), "m1") == without_stream(j.json(), "j1")


@pytest.mark.parametrize("media", [NDJSON, MSGPACK])
def test_many_streams_answers_equal_json(client: Any, media: str) -> None:
    def items(tag: str) -> list[dict[str, Any]]:
        return [
            {"stream_id": f"{tag}-{k}", "t": T0 + i, "x": [0.5, float(k), float(i)]}
            for i in range(3)
            for k in range(4)
        ]

    j = post(client, "/v1/events", {"events": items("j")}, JSON)
    o = post(client, "/v1/events", {"events": items("o")}, media)
    assert j.status_code == o.status_code == 200
    assert json.loads(o.text.replace('"o-', '"j-')) == j.json()


# (name, the body of POST /v1/streams/{id}/events as a list of events)
BAD_ONE_STREAM: list[tuple[str, list[Any], int, str]] = [
    ("feature count", [{"t": T0, "x": [1, 2]}], 422, "wrong_feature_count"),
    ("nan", [{"t": T0, "x": [1, 2, math.nan]}], 422, "non_finite_value"),
    ("huge", [{"t": T0, "x": [1, 2, 1e300]}], 422, "non_finite_value"),
    ("time", [{"t": "yesterday", "x": [1, 2, 3]}], 422, "invalid_timestamp"),
    ("negative time", [{"t": -1, "x": [1, 2, 3]}], 422, "invalid_timestamp"),
    ("unknown field", [{"t": T0, "x": [1, 2, 3], "y": 1}], 422, "invalid_event"),
    ("unknown feature", [{"t": T0, "x": {"temp": 1, "vib": 2, "rpmx": 3}}], 422, "unknown_feature"),
    ("missing t", [{"x": [1, 2, 3]}], 422, "invalid_event"),
    ("id", [{"t": T0, "x": [1, 2, 3], "id": ""}], 422, "invalid_event"),
    ("not an object", [[T0, [1, 2, 3]]], 422, "invalid_event"),
    (
        "second bad",
        [{"t": T0, "x": [1, 2, 3]}, {"t": T0 + 1, "x": [1]}],
        422,
        "wrong_feature_count",
    ),
]


@pytest.mark.parametrize("media", [NDJSON, MSGPACK])
@pytest.mark.parametrize(("name", "events", "status", "code"), BAD_ONE_STREAM)
def test_bad_one_stream_body_same_error_state_untouched(
    client: Any, media: str, name: str, events: list[Any], status: int, code: str
) -> None:
    j = post(client, "/v1/streams/bj/events", events, JSON)
    o = post(client, "/v1/streams/bo/events", events, media)
    assert (j.status_code, j.json()["error"]["code"]) == (status, code)
    assert o.status_code == status
    assert o.json() == j.json()  # same code, message and location (events[i]...)
    for stream in ("bj", "bo"):
        assert client.get(f"/v1/streams/{stream}").status_code == 404  # nothing applied


@pytest.mark.parametrize("media", [NDJSON, MSGPACK])
def test_bad_items_of_many_streams_same_results(client: Any, media: str) -> None:
    def items(tag: str) -> list[Any]:
        return [
            {"stream_id": f"{tag}-ok", "t": T0, "x": [1, 2, 3]},
            {"stream_id": f"{tag}-bad", "t": T0, "x": [1, 2]},
            {"stream_id": "bad id!", "t": T0, "x": [1, 2, 3]},
            {"t": T0, "x": [1, 2, 3]},
            {"stream_id": f"{tag}-nan", "t": T0, "x": [1, 2, math.nan]},
        ]

    j = post(client, "/v1/events", items("j"), JSON)
    o = post(client, "/v1/events", items("o"), media)
    assert j.status_code == o.status_code == 200
    assert json.loads(o.text.replace('"o-', '"j-')) == j.json()
    assert [r["status"] for r in o.json()["results"]] == [200, 422, 422, 422, 422]
    assert client.get("/v1/streams/o-ok").json()["count"] == 1
    assert client.get("/v1/streams/o-bad").status_code == 404
    assert client.get("/v1/streams/o-nan").status_code == 404


def _assert_refused(r: Any, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    error: dict[str, Any] = r.json()["error"]
    assert error["code"] == code
    return error


def test_a_malformed_ndjson_line_fails_the_request_naming_the_line(client: Any) -> None:
    body = _ndjson([{"t": T0, "x": [1, 2, 3]}]) + b'{"t": 1, "x": [\n' + _ndjson([{"t": T0 + 1}])
    for url in ("/v1/streams/nl/events", "/v1/events"):
        r = client.post(url, content=body, headers={"content-type": NDJSON})
        error = _assert_refused(r, 400, "invalid_json")
        assert error["details"] == {"line": 2}
        assert error["message"].startswith("line 2: ")
    dup = b'{"t": 1714564800, "x": [1, 2, 3], "t": 1714564801}\n'
    r = client.post("/v1/streams/nl/events", content=dup, headers={"content-type": NDJSON})
    assert _assert_refused(r, 400, "invalid_json")["details"] == {"line": 1}
    assert client.get("/v1/streams/nl").status_code == 404


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        (b"\xc1", 400, "invalid_json"),  # a never-used MessagePack byte
        (msgspec.msgpack.encode({"t": T0, "x": [1, 2, 3]}) + b"\x00", 400, "invalid_json"),
        (b"\x92\x01", 400, "invalid_json"),  # truncated
        (msgspec.msgpack.encode("text"), 422, "invalid_event"),
        (msgspec.msgpack.encode({"t": b"\x01", "x": [1, 2, 3]}), 422, "invalid_timestamp"),
        (msgspec.msgpack.encode({"t": T0, "x": [1, 2, True]}), 422, "invalid_event"),
        (msgspec.msgpack.encode({1: T0, "x": [1, 2, 3]}), 422, "invalid_event"),
        (b"", 400, "invalid_json"),
    ],
)
def test_bad_messagepack_bodies(client: Any, raw: bytes, status: int, code: str) -> None:
    for url in ("/v1/streams/mp/events", "/v1/events"):
        r = client.post(url, content=raw, headers={"content-type": MSGPACK})
        if url == "/v1/events" and status == 422:  # not an envelope of items there
            _assert_refused(r, 422, "invalid_event")
            continue
        _assert_refused(r, status, code)
    assert client.get("/v1/streams/mp").status_code == 404


def test_too_many_events_in_each_format(make_settings: Callable[..., Any]) -> None:
    with make_client(create_app(make_settings(max_events_per_request=3))) as c:
        events = [{"t": T0 + i, "x": [1, 2, 3]} for i in range(4)]
        for media in (JSON, NDJSON, MSGPACK):
            r = post(c, "/v1/streams/many/events", events, media)
            _assert_refused(r, 413, "too_many_events")
        assert c.get("/v1/streams/many").status_code == 404


@pytest.mark.parametrize("media", ["text/plain", "application/xml", "application/x-protobuf"])
def test_other_content_types_are_415(client: Any, media: str) -> None:
    for url in ("/v1/streams/ct/events", "/v1/events"):
        r = client.post(url, content=b"{}", headers={"content-type": media})
        error = _assert_refused(r, 415, "unsupported_media_type")
        assert error["details"]["accepted"] == [JSON, NDJSON, MSGPACK]


def test_state_import_still_takes_json_only(client: Any) -> None:
    r = client.put(
        "/v1/streams/s/state", content=msgspec.msgpack.encode({}), headers={"content-type": MSGPACK}
    )
    _assert_refused(r, 415, "unsupported_media_type")


def test_openapi_documents_the_formats(client: Any) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/v1/streams/{stream_id}/events", "/v1/events"):
        content = paths[path]["post"]["requestBody"]["content"]
        assert set(content) == {JSON, NDJSON, MSGPACK}
