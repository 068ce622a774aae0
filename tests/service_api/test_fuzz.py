"""Fuzzing in the suite: schemathesis cases from the OpenAPI document against the app (no 5xx,
every status answered is documented for its route), and a corpus of hand-made bad inputs, each
with its own 4xx code, leaving every stored state as it was, and every status it gets
documented for its route."""

from __future__ import annotations

import json
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import status_code_conformance

from service.app import create_app
from tests.service_api.conftest import make_client

T0 = 1_714_564_800.0
EXAMPLES_PER_ROUTE = 25
JSON = {"content-type": "application/json"}
EVENTS = "/v1/streams/s/events"


def documented(app: Any, method: str, template: str) -> set[int]:
    responses = app.openapi()["paths"][template][method.lower()]["responses"]
    return {int(code) for code in responses}


def test_generated_requests_get_no_5xx_and_only_documented_codes(make_settings: Any) -> None:
    app = create_app(make_settings())
    schema = schemathesis.openapi.from_dict(app.openapi())
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10
    with make_client(app) as c:
        c.post(EVENTS, json={"t": T0, "x": [1, 2, 3]})  # one stream that exists
        for op in operations:

            @settings(
                max_examples=EXAMPLES_PER_ROUTE,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=op.as_strategy())
            def one(case: Any) -> None:
                kw = case.as_transport_kwargs()
                body: dict[str, Any] = {}
                if "json" in kw:
                    body["content"] = json.dumps(kw["json"]).encode()
                elif kw.get("data") is not None:
                    data = kw["data"]
                    body["content"] = data if isinstance(data, bytes) else str(data).encode()
                r = c.request(
                    kw["method"], kw["url"], headers=kw["headers"], params=kw["params"], **body
                )
                case.validate_response(r, checks=[not_a_server_error, status_code_conformance])

            one()


def ev(x: str = "[1, 2, 3]", t: str = "1714564810", extra: str = "") -> bytes:
    """The raw body of one event, its parts spelled as given."""
    return f'{{"t": {t}, "x": {x}{extra}}}'.encode()


TEXT = {"content-type": "text/plain"}
FORM = {"content-type": "application/x-www-form-urlencoded"}
LONG_STREAM = "/v1/streams/" + "s" * 200 + "/events"
PREDICT = "/v1/streams/s/prediction?at="
STATE = "/v1/streams/s/state"
MANY = json.dumps([{"t": T0 + i, "x": [1, 2, 3]} for i in range(1001)]).encode()
LONG_ID = json.dumps({"t": T0 + 10, "x": [1, 2, 3], "id": "i" * 10_000}).encode()

# (name, method, path, body, headers, status, code)
CORPUS: list[tuple[str, str, str, bytes, dict[str, str], int, str]] = [
    ("nan", "POST", EVENTS, ev("[1, NaN, 3]"), JSON, 422, "non_finite_value"),
    ("inf", "POST", EVENTS, ev("[Infinity, 2, 3]"), JSON, 422, "non_finite_value"),
    ("-inf", "POST", EVENTS, ev("[1, 2, -Infinity]"), JSON, 422, "non_finite_value"),
    ("3e38", "POST", EVENTS, ev("[1, 3e38, 3]"), JSON, 422, "value_out_of_range"),
    ("-0.0 time", "POST", EVENTS, ev(t="-0.0"), JSON, 409, "out_of_order"),
    ("nan time", "POST", EVENTS, ev(t="NaN"), JSON, 422, "invalid_timestamp"),
    ("huge array", "POST", EVENTS, ev("[" + "1," * 100_000 + "1]"), JSON, 422, "wrong_feature_count"),  # noqa: E501
    ("oversized body", "POST", EVENTS, ev("[" + "1," * 600_000 + "1]"), JSON, 413, "payload_too_large"),  # noqa: E501
    ("too many events", "POST", EVENTS, MANY, JSON, 413, "too_many_events"),
    ("deep json", "POST", EVENTS, b"[" * 100_000 + b"]" * 100_000, JSON, 400, "invalid_json"),
    ("invalid utf-8", "POST", EVENTS, ev(extra=', "id": "') + b'\xff\xfe"}', JSON, 400, "invalid_json"),  # noqa: E501
    ("text/plain", "POST", EVENTS, ev(), TEXT, 415, "unsupported_media_type"),
    ("form", "POST", EVENTS, b"t=1714564810", FORM, 415, "unsupported_media_type"),
    ("full-width digits", "POST", EVENTS, ev(t='"１７１４５６４８１０"'), JSON, 422, "invalid_timestamp"),  # noqa: E501
    ("underscores", "POST", EVENTS, ev(t='"1_714_564_810"'), JSON, 422, "invalid_timestamp"),
    ("duplicate keys", "POST", EVENTS, ev(t="1714564810, \"t\": 1714564811"), JSON, 400, "invalid_json"),  # noqa: E501
    ("empty body", "POST", EVENTS, b"", JSON, 400, "invalid_json"),
    ("blank body", "POST", EVENTS, b"  \n", JSON, 400, "invalid_json"),
    ("oversized id", "POST", EVENTS, LONG_ID, JSON, 422, "invalid_event"),
    ("oversized stream id", "POST", LONG_STREAM, ev(), JSON, 422, "invalid_stream_id"),
    ("out of order", "POST", EVENTS, ev(t="1714564700"), JSON, 409, "out_of_order"),
    ("multi: not an envelope", "POST", "/v1/events", b'{"stream_id": "s"}', JSON, 422, "invalid_event"),  # noqa: E501
    ("multi: duplicate keys", "POST", "/v1/events", b'{"events": [], "events": []}', JSON, 400, "invalid_json"),  # noqa: E501
    ("at: underscores", "GET", PREDICT + "1_767_225_700", b"", {}, 422, "invalid_timestamp"),
    ("at: full-width", "GET", PREDICT + "１７６７２２５６００", b"", {}, 422, "invalid_timestamp"),
    ("state: nan", "PUT", STATE, b'{"version": NaN}', JSON, 422, "invalid_state"),
    ("state: empty", "PUT", STATE, b"", JSON, 400, "invalid_json"),
    ("state: text", "PUT", STATE, b"{}", TEXT, 415, "unsupported_media_type"),
]  # fmt: skip

TEMPLATES = {
    "/v1/events": "/v1/events",
    "/prediction": "/v1/streams/{stream_id}/prediction",
    "/state": "/v1/streams/{stream_id}/state",
    "/events": "/v1/streams/{stream_id}/events",
}


def template_of(path: str) -> str:
    path = path.split("?", 1)[0]
    return next(t for suffix, t in TEMPLATES.items() if path.endswith(suffix))


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status", "code"),
    [case[1:] for case in CORPUS],
    ids=[case[0] for case in CORPUS],
)
def test_bad_input_corpus(
    client: Any,
    method: str,
    path: str,
    body: bytes,
    headers: dict[str, str],
    status: int,
    code: str,
) -> None:
    seeded = [{"t": T0, "x": [1, 2, 3], "id": "a"}, {"t": T0 + 1, "x": [1, 2, 3]}]
    assert client.post(EVENTS, json=seeded).status_code == 200
    before = client.get("/v1/streams/s/state").json()
    r = client.request(method, path, content=body, headers=headers)
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code, r.text
    assert client.get("/v1/streams/s/state").json() == before
    assert client.get(f"/v1/streams/{'s' * 200}").status_code == 422  # nothing else made either
    assert status in documented(client.app, method, template_of(path))
