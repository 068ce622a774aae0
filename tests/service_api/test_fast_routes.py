"""The events routes' fast endpoints (service.api.routers.fast) answer as their FastAPI twins:
unusual query parameters are handed to the FastAPI route, auth comes first."""

from __future__ import annotations

from typing import Any

from starlette.routing import Route

from service.app import create_app
from tests.service_api.conftest import make_client

T0 = 1_714_564_800.0
EVENT = {"t": T0, "x": {"temp": 1.0, "vib": 2.0, "rpm": 3.0}}


def test_the_fast_endpoints_come_first_and_stay_out_of_the_schema(client: Any) -> None:
    first = client.app.router.routes[:2]
    assert all(type(r) is Route and not r.include_in_schema for r in first)  # not APIRoutes
    assert {r.path for r in first} == {"/v1/streams/{stream_id}/events", "/v1/events"}
    paths = client.get("/openapi.json").json()["paths"]
    assert "post" in paths["/v1/streams/{stream_id}/events"]
    assert "post" in paths["/v1/events"]


def test_a_model_parameter_fastapi_refuses_gets_fastapis_answer(client: Any) -> None:
    long = "m" * 65
    r = client.post(f"/v1/streams/s/events?model={long}", json=EVENT)
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "invalid_request"
    r = client.post(f"/v1/events?model={long}", json={"events": []})
    assert r.status_code == 422
    r = client.post("/v1/streams/s/events?model=nope&model=pump", json=EVENT)
    assert r.status_code == 200  # FastAPI reads the last value


def test_auth_is_checked_before_anything_else(make_settings: Any) -> None:
    app = create_app(make_settings(api_keys={"key-one-1": "t1"}))
    with make_client(app) as c:
        r = c.post("/v1/streams/bad%20id/events?model=nope", content=b"not json")
        assert r.status_code == 401
        assert r.headers["www-authenticate"].startswith("Bearer")
        auth = {"Authorization": "Bearer key-one-1"}
        r = c.post("/v1/streams/bad%20id/events", content=b"{}", headers=auth)
        assert r.json()["error"]["code"] == "invalid_stream_id"
        r = c.post("/v1/streams/s/events?model=nope", json=EVENT, headers=auth)
        assert r.json()["error"]["code"] == "unknown_model"
        r = c.post("/v1/streams/s/events", json=EVENT, headers=auth)
        assert r.status_code == 200
        assert r.json()["count"] == 1
