"""Bad input: a 4xx with a machine-readable code, the common error body, and no state changed.
Then random JSON thrown at the API finds no 5xx."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.app import create_app
from tests.service_api.conftest import make_client

T0 = 1_714_564_800.0
JSON = {"content-type": "application/json"}
GOOD = {"t": T0 + 10, "x": [20.0, 0.1, 1000.0]}


@pytest.fixture
def seeded(client: Any) -> Iterator[Any]:
    """A client whose stream ``s`` has two applied events."""
    r = client.post(
        "/v1/streams/s/events", json=[{"t": T0, "x": [1, 2, 3]}, {"t": T0 + 1, "x": [1, 2, 3]}]
    )
    assert r.status_code == 200
    return client


def snapshot(client: Any) -> Any:
    return client.get("/v1/streams/s/state").json()


def assert_error(r: Any, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code, body
    assert body["error"]["message"]
    return dict(body["error"])


BAD_EVENTS = [
    # (raw body, status, code)
    ('{"t": 1714564810, "x": [1, 2]}', 422, "wrong_feature_count"),
    ('{"t": 1714564810, "x": [1, 2, 3, 4]}', 422, "wrong_feature_count"),
    ('{"t": 1714564810, "x": []}', 422, "wrong_feature_count"),
    ('{"t": 1714564810, "x": [1, NaN, 3]}', 422, "non_finite_value"),
    ('{"t": 1714564810, "x": [1, Infinity, 3]}', 422, "non_finite_value"),
    ('{"t": 1714564810, "x": [1, -Infinity, 3]}', 422, "non_finite_value"),
    ('{"t": 1714564810, "x": [1, 1e400, 3]}', 422, "non_finite_value"),
    ('{"t": 1714564810, "x": [1, -1e39, 3]}', 422, "non_finite_value"),  # beyond float32
    ('{"t": 1714564810, "x": [1, 1' + "0" * 400 + ", 3]}", 422, "non_finite_value"),
    ('{"t": 1714564810, "x": {"temp": 1, "vib": NaN, "rpm": 3}}', 422, "non_finite_value"),
    ('{"t": 1714564810, "x": {"temp": 1, "vib": 2, "rpm": 3, "oil": 4}}', 422, "unknown_feature"),
    ('{"t": 1714564810, "x": {"temp": 1, "vib": 2}}', 422, "missing_feature"),
    ('{"t": 1714564810, "x": [1, "2", 3]}', 422, "invalid_event"),
    ('{"t": 1714564810, "x": [1, true, 3]}', 422, "invalid_event"),
    ('{"t": 1714564810, "x": [1, null, 3]}', 422, "invalid_event"),
    ('{"t": 1714564810, "x": "1,2,3"}', 422, "invalid_event"),
    ('{"t": NaN, "x": [1, 2, 3]}', 422, "invalid_timestamp"),
    ('{"t": Infinity, "x": [1, 2, 3]}', 422, "invalid_timestamp"),
    ('{"t": 1e400, "x": [1, 2, 3]}', 422, "invalid_timestamp"),
    ('{"t": -5, "x": [1, 2, 3]}', 422, "invalid_timestamp"),
    ('{"t": 3e11, "x": [1, 2, 3]}', 422, "invalid_timestamp"),  # after year 9999
    ('{"t": "yesterday", "x": [1, 2, 3]}', 422, "invalid_timestamp"),
    ('{"t": "2024-05-01T12:00:00", "x": [1, 2, 3]}', 422, "invalid_timestamp"),  # no offset
    ('{"t": "2024-13-01T12:00:00Z", "x": [1, 2, 3]}', 422, "invalid_timestamp"),
    ('{"t": "2024-02-30T12:00:00Z", "x": [1, 2, 3]}', 422, "invalid_timestamp"),
    ('{"t": "2024-05-01T12:00:60Z", "x": [1, 2, 3]}', 422, "invalid_timestamp"),
    ('{"t": "2024-05-01T12:00:00+24:00", "x": [1, 2, 3]}', 422, "invalid_timestamp"),
    ('{"t": "1714564810", "x": [1, 2, 3]}', 422, "invalid_timestamp"),
    ('{"t": true, "x": [1, 2, 3]}', 422, "invalid_timestamp"),
    ('{"t": null, "x": [1, 2, 3]}', 422, "invalid_timestamp"),
    ('{"t": [1], "x": [1, 2, 3]}', 422, "invalid_timestamp"),
    ('{"x": [1, 2, 3]}', 422, "invalid_event"),
    ('{"t": 1714564810}', 422, "invalid_event"),
    ('{"t": 1714564810, "x": [1, 2, 3], "ts": 5}', 422, "invalid_event"),
    ('{"t": 1714564810, "x": [1, 2, 3], "id": 7}', 422, "invalid_event"),
    ('{"t": 1714564810, "x": [1, 2, 3], "id": ""}', 422, "invalid_event"),
    ('{"t": 1714564810, "x": [1, 2, 3], "id": "' + "i" * 257 + '"}', 422, "invalid_event"),
    ('{"t": 1714564810, "x": [1, 2, 3], "id": "\\ud800"}', 422, "invalid_event"),  # lone surrogate
    ('{"t": 1714564810, "x": {"\\udfff": 1}}', 422, "unknown_feature"),
    ('{"t": "\\ud800", "x": [1, 2, 3]}', 422, "invalid_timestamp"),
    ('{"t": 1714564810, "x": [1, 2, 3], "\\ud800": 1}', 422, "invalid_event"),
    ("5", 422, "invalid_event"),
    ('"event"', 422, "invalid_event"),
    ("null", 422, "invalid_event"),
    ('{"events": 5}', 422, "invalid_event"),
    ('{"events": [], "more": 1}', 422, "invalid_event"),
    ("[5]", 422, "invalid_event"),
    (
        '[{"t": 1714564810, "x": [1, 2, 3]}, {"t": 1714564811, "x": [1, 2]}]',
        422,
        "wrong_feature_count",
    ),
    (
        '{"events": [{"t": 1714564810, "x": [1, 2, 3]}, {"t": "x", "x": [1, 2, 3]}]}',
        422,
        "invalid_timestamp",
    ),
    ('{"t": 1714564810, "x": [1, 2, 3]', 400, "invalid_json"),
    ("{'t': 1}", 400, "invalid_json"),
    ("", 400, "invalid_json"),
    ("   ", 400, "invalid_json"),
    ("[" * 100_000 + "]" * 100_000, 400, "invalid_json"),
    ('{"t": 1' + "0" * 5000 + ', "x": [1, 2, 3]}', 400, "invalid_json"),  # > int digit limit
]


@pytest.mark.parametrize(("raw", "status", "code"), BAD_EVENTS, ids=lambda v: str(v)[:40])
def test_bad_event_is_refused_and_changes_nothing(
    seeded: Any, raw: str, status: int, code: str
) -> None:
    before = snapshot(seeded)
    r = seeded.post("/v1/streams/s/events", content=raw.encode(), headers=JSON)
    assert_error(r, status, code)
    assert snapshot(seeded) == before
    # the same event as an item of the multi-stream route: a per-item error, nothing applied
    if status == 422 and raw.startswith(('{"t"', '{"x"')):
        item = raw.replace("{", '{"stream_id": "s", ', 1)
        r = seeded.post("/v1/events", content=f'{{"events": [{item}]}}'.encode(), headers=JSON)
        assert r.status_code == 200
        result = r.json()["results"][0]
        assert result["status"] == status
        assert result["error"]["code"] == code
        assert snapshot(seeded) == before


def test_one_bad_event_fails_the_whole_one_stream_batch(seeded: Any) -> None:
    before = snapshot(seeded)
    batch = [
        {"t": T0 + 2, "x": [1, 2, 3]},
        {"t": T0 + 3, "x": [1, 2]},
        {"t": T0 + 4, "x": [1, math.inf, 3]},
    ]
    r = seeded.post("/v1/streams/s/events", content=json.dumps(batch).encode(), headers=JSON)
    err = assert_error(r, 422, "wrong_feature_count")
    assert err["details"]["field"] == "events[1].x"
    assert [e["code"] for e in err["details"]["errors"]] == [
        "wrong_feature_count",
        "non_finite_value",
    ]
    assert snapshot(seeded) == before


def test_multi_stream_route_applies_valid_items_and_reports_invalid_ones(seeded: Any) -> None:
    body = {
        "events": [
            {"stream_id": "s", "t": T0 + 2, "x": [1, 2, 3]},
            {"stream_id": "bad id", "t": T0, "x": [1, 2, 3]},
            {"stream_id": "s", "t": T0 + 3, "x": [1, 2]},
            {"t": T0, "x": [1, 2, 3]},
            {"stream_id": "other", "t": T0, "x": [1, 2, 3]},
            {"stream_id": "s", "t": T0 - 1, "x": [1, 2, 3]},
            {"stream_id": 5, "t": T0, "x": [1, 2, 3]},
            "nonsense",
        ]
    }
    r = seeded.post("/v1/events", json=body)
    assert r.status_code == 200
    res = r.json()
    statuses = [(x["status"], x["error"]["code"] if x["error"] else None) for x in res["results"]]
    assert statuses == [
        (200, None),
        (422, "invalid_stream_id"),
        (422, "wrong_feature_count"),
        (422, "invalid_event"),
        (200, None),
        (409, "out_of_order"),
        (422, "invalid_stream_id"),
        (422, "invalid_event"),
    ]
    assert [x["index"] for x in res["results"]] == list(range(8))
    assert res["applied"] == 2
    assert res["failed"] == 6
    assert seeded.get("/v1/streams/s").json()["count"] == 3
    assert seeded.get("/v1/streams/other").json()["count"] == 1


@pytest.mark.parametrize(
    "body",
    ['{"event": []}', "5", '{"events": [], "x": 1}', '{"events": {}}'],
)
def test_multi_stream_route_refuses_a_malformed_envelope(client: Any, body: str) -> None:
    assert_error(
        client.post("/v1/events", content=body.encode(), headers=JSON), 422, "invalid_event"
    )


def test_too_many_events(make_settings: Any) -> None:
    with make_client(create_app(make_settings(max_events_per_request=5))) as c:
        events = [{"t": T0 + i, "x": [1, 2, 3]} for i in range(6)]
        assert_error(c.post("/v1/streams/s/events", json=events), 413, "too_many_events")
        multi = [{"stream_id": f"s{i}", **e} for i, e in enumerate(events)]
        assert_error(c.post("/v1/events", json={"events": multi}), 413, "too_many_events")
        assert c.get("/v1/streams/s").status_code == 404
        assert c.post("/v1/streams/s/events", json=events[:5]).status_code == 200


def test_oversized_bodies_are_refused_before_parsing(make_settings: Any) -> None:
    with make_client(create_app(make_settings(max_body_bytes=2048))) as c:
        big = json.dumps([{"t": T0 + i, "x": [1, 2, 3]} for i in range(100)]).encode()
        assert len(big) > 2048
        r = c.post("/v1/streams/s/events", content=big, headers=JSON)
        assert_error(r, 413, "payload_too_large")

        # chunked: no Content-Length, the limit is enforced while reading
        def chunks() -> Iterator[bytes]:
            for i in range(0, len(big), 500):
                yield big[i : i + 500]

        r = c.post("/v1/streams/s/events", content=chunks(), headers=JSON)
        assert "content-length" not in r.request.headers
        assert_error(r, 413, "payload_too_large")
        # not even valid JSON: the size is checked first
        r = c.post("/v1/events", content=b"x" * 5000, headers=JSON)
        assert_error(r, 413, "payload_too_large")
        assert c.get("/v1/streams/s").status_code == 404
        m = c.get("/metrics").text
        assert 'route="/v1/streams/{stream_id}/events",status="413"' in m
        small = json.dumps([{"t": T0 + i, "x": [1, 2, 3]} for i in range(5)]).encode()
        assert c.post("/v1/streams/s/events", content=small, headers=JSON).status_code == 200


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data", "application/xml"],
)
def test_wrong_content_type(seeded: Any, content_type: str) -> None:
    before = snapshot(seeded)
    body = json.dumps(GOOD).encode()
    r = seeded.post("/v1/streams/s/events", content=body, headers={"content-type": content_type})
    assert_error(r, 415, "unsupported_media_type")
    r = seeded.put(
        "/v1/streams/s/state",
        content=json.dumps(before).encode(),
        headers={"content-type": content_type},
    )
    assert_error(r, 415, "unsupported_media_type")
    assert snapshot(seeded) == before
    # JSON with a charset, or a +json type, is JSON
    ok = seeded.post(
        "/v1/streams/s/events",
        content=body,
        headers={"content-type": "application/json; charset=utf-8"},
    )
    assert ok.status_code == 200


@pytest.mark.parametrize(
    "stream_id",
    ["bad%20id", "-leading-dash", "a" * 129, "a%7Bb%7D", ".hidden", "%C3%A9t%C3%A9", "tab%09"],
)
def test_invalid_stream_ids_on_every_route(client: Any, stream_id: str) -> None:
    base = f"/v1/streams/{stream_id}"
    for method, path, body in [
        ("POST", f"{base}/events", GOOD),
        ("GET", base, None),
        ("GET", f"{base}/prediction", None),
        ("GET", f"{base}/state", None),
        ("PUT", f"{base}/state", {}),
        ("DELETE", base, None),
    ]:
        kw = {"content": json.dumps(body).encode(), "headers": JSON} if body is not None else {}
        assert_error(client.request(method, path, **kw), 422, "invalid_stream_id")


def test_unknown_routes_and_methods_use_the_error_shape(client: Any) -> None:
    assert_error(client.get("/v1/nothing"), 404, "not_found")
    assert_error(client.get("/v1/streams/a/b/c"), 404, "not_found")
    assert_error(client.patch("/v1/streams/a"), 405, "method_not_allowed")


@pytest.mark.parametrize("at", ["soon", "NaN", "inf", "-1", "1e400", "2024-05-01", "3e11"])
def test_invalid_prediction_time(seeded: Any, at: str) -> None:
    r = seeded.get("/v1/streams/s/prediction", params={"at": at})
    assert_error(r, 422, "invalid_timestamp")


def test_framework_validation_errors_use_the_error_shape(client: Any) -> None:
    r = client.get("/v1/streams/s", params={"model": "m" * 100})
    err = assert_error(r, 422, "invalid_request")
    assert err["details"][0]["loc"] == ["query", "model"]


def _bad_states(good: dict[str, Any]) -> list[tuple[str, Any]]:
    def edit(**kw: Any) -> dict[str, Any]:
        return {**good, **kw}

    without = {k: v for k, v in good.items() if k != "h"}
    return [
        ("not an object", [1, 2]),
        ("missing h", without),
        ("unknown field", edit(extra=1)),
        ("other version", edit(version="0000000000000000")),
        ("other model", edit(model="plain")),
        ("short h", edit(h=good["h"][:-1])),
        ("long x_last", edit(x_last=[*good["x_last"], 1.0])),
        ("h not numbers", edit(h=["a"] * len(good["h"]))),
        ("h beyond float32", edit(h=[1e39] * len(good["h"]))),
        ("negative count", edit(count=-1)),
        ("huge count", edit(count=2**70)),
        ("bool count", edit(count=True)),
        ("bad last_t", edit(last_t="yesterday")),
        ("recent not a list", edit(recent=5)),
        ("recent entry", edit(recent=[{"id": "a"}])),
        (
            "recent bad reset",
            edit(recent=[{"id": "a", "t": T0, "dt": 1, "y": [1, 2], "reset": "x", "count": 1}]),
        ),
        (
            "recent short y",
            edit(recent=[{"id": "a", "t": T0, "dt": 1, "y": [1], "reset": None, "count": 1}]),
        ),
        (
            "recent negative dt",
            edit(recent=[{"id": "a", "t": T0, "dt": -1, "y": [1, 2], "count": 1}]),
        ),
    ]


def test_bad_state_imports_are_refused(seeded: Any) -> None:
    good = snapshot(seeded)
    for label, doc in _bad_states(good):
        r = seeded.put("/v1/streams/s/state", content=json.dumps(doc).encode(), headers=JSON)
        assert_error(r, 422, "invalid_state")
        assert snapshot(seeded) == good, label
    nan_h = json.dumps(good).replace(
        json.dumps(good["h"]), "[" + ", ".join(["NaN"] * len(good["h"])) + "]"
    )
    r = seeded.put("/v1/streams/s/state", content=nan_h.encode(), headers=JSON)
    assert_error(r, 422, "invalid_state")
    assert snapshot(seeded) == good
    assert seeded.put("/v1/streams/s/state", json=good).status_code == 200


# -- fuzzing ----------------------------------------------------------------------------------
# Text includes lone surrogates: JSON can spell them ("\ud800"), UTF-8 cannot.
TEXT = st.text(
    st.characters() | st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), max_size=20
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)
TIMES = st.one_of(
    st.floats(),
    st.integers(),
    TEXT,
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    st.floats(min_value=0, max_value=4e9),
    JSON_VALUES,
)
FEATURES = st.one_of(
    st.lists(st.floats(width=64), min_size=0, max_size=5),
    st.lists(st.floats(min_value=-1e6, max_value=1e6), min_size=3, max_size=3),
    st.dictionaries(st.sampled_from(["temp", "vib", "rpm", "oil", ""]), st.floats(), max_size=4),
    JSON_VALUES,
)
EVENTS = st.fixed_dictionaries(
    {"t": TIMES, "x": FEATURES},
    optional={"id": st.one_of(TEXT, JSON_VALUES), "junk": JSON_VALUES},
)
BODIES = st.one_of(
    EVENTS,
    st.lists(EVENTS, max_size=4),
    st.fixed_dictionaries({"events": st.lists(EVENTS, max_size=4)}),
    JSON_VALUES,
)
ALLOWED = {200, 400, 409, 413, 415, 422}


def _dump(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()  # NaN / Infinity tokens included


def test_fuzzed_events_never_get_a_5xx(make_settings: Any) -> None:
    with make_client(create_app(make_settings())) as c:

        @settings(max_examples=90, deadline=None, suppress_health_check=list(HealthCheck))
        @given(body=BODIES, stream_id=st.sampled_from(["fz", "fz2"]))
        def one_stream(body: Any, stream_id: str) -> None:
            before = c.get(f"/v1/streams/{stream_id}/state")
            r = c.post(f"/v1/streams/{stream_id}/events", content=_dump(body), headers=JSON)
            assert r.status_code in ALLOWED, r.text
            err = r.json().get("error") if isinstance(r.json(), dict) else None
            if r.status_code >= 400 and r.status_code != 409:
                assert err
                assert err["code"]
                assert err["message"]
                assert c.get(f"/v1/streams/{stream_id}/state").json() == before.json()

        @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
        @given(
            items=st.lists(
                st.one_of(
                    EVENTS.map(lambda e: {"stream_id": "fz3", **e}),
                    st.fixed_dictionaries({"stream_id": JSON_VALUES, "t": TIMES, "x": FEATURES}),
                    JSON_VALUES,
                ),
                max_size=5,
            )
        )
        def many_streams(items: list[Any]) -> None:
            r = c.post("/v1/events", content=_dump({"events": items}), headers=JSON)
            assert r.status_code in ALLOWED, r.text
            if r.status_code == 200:
                for result in r.json()["results"]:
                    assert result["status"] in ALLOWED

        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
        @given(
            doc=st.one_of(
                JSON_VALUES,
                st.fixed_dictionaries(
                    {
                        "version": JSON_VALUES,
                        "h": FEATURES,
                        "x_last": FEATURES,
                        "last_t": TIMES,
                        "count": JSON_VALUES,
                    },
                    optional={"recent": JSON_VALUES, "model": JSON_VALUES, "created": TIMES},
                ),
            )
        )
        def state_import(doc: Any) -> None:
            r = c.put("/v1/streams/fz4/state", content=_dump(doc), headers=JSON)
            assert r.status_code in ALLOWED, r.text

        one_stream()
        many_streams()
        state_import()


def post_scope(path: str) -> dict[str, Any]:
    """The ASGI scope of a JSON ``POST`` to ``path`` (for tests that drive the app directly)."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json")],
        "client": ("127.0.0.1", 5000),
        "server": ("test", 80),
        "state": {},
    }


@pytest.mark.anyio
async def test_a_client_that_leaves_mid_body_gets_no_answer_and_no_state(
    make_settings: Any,
) -> None:
    from tests.service_api.conftest import metric_value

    app = create_app(make_settings())
    async with app.router.lifespan_context(app):
        messages = iter(
            [
                {"type": "http.request", "body": b'{"t": 1714564800, "x": [1', "more_body": True},
                {"type": "http.disconnect"},
            ]
        )
        sent: list[Any] = []

        async def receive() -> Any:
            return next(messages)

        async def send(message: Any) -> None:
            sent.append(message)

        await app(post_scope("/v1/streams/gone/events"), receive, send)
        assert sent == []
        text = app.state.ctx.metrics.render_latest()[0].decode()
        labels = {"route": "/v1/streams/{stream_id}/events", "status": "499"}
        assert metric_value(text, "liquid_http_requests_total", labels) == 1
        assert await app.state.ctx.engine.stream_info("default", "pump", "gone") is None
