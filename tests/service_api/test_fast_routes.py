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


def test_stream_ids_are_read_at_the_door_as_the_router_reads_them() -> None:
    from service.api.front_door import stream_id_in

    assert stream_id_in("/v1/streams/pump-7/events") == "pump-7"
    assert stream_id_in("/v1/streams/a b/events") == "a b"  # scope paths are decoded
    for path in ("/v1/streams//events", "/v1/streams/a/b/events", "/v1/streams/a/event"):
        assert stream_id_in(path) is None


def test_the_events_posts_skip_the_app_stack_and_answer_as_it_would(make_settings: Any) -> None:
    """POSTs on the events paths never reach the app's middleware stack (the front door
    dispatches them), yet keep its metrics labels, body limit and error answers; other requests
    still go through it."""
    app = create_app(make_settings(max_body_bytes=4096))
    with make_client(app) as c:
        c.get("/healthz")  # builds the app's own stack
        through_stack: list[str] = []
        stack = app.middleware_stack

        async def spy(scope: Any, receive: Any, send: Any) -> None:
            through_stack.append(f"{scope.get('method')} {scope.get('path')}")
            await stack(scope, receive, send)  # type: ignore[misc]

        app.middleware_stack = spy
        assert c.post("/v1/streams/s/events", json=EVENT).status_code == 200
        r = c.post("/v1/events", json={"events": [{"stream_id": "s", **EVENT, "t": T0 + 1}]})
        assert r.status_code == 200
        r = c.post("/v1/streams/s/events", content=b"x" * 5000)
        assert r.status_code == 413
        assert r.json()["error"]["code"] == "payload_too_large"
        r = c.post("/v1/streams/s/events", content=b"{")
        assert r.status_code == 400  # malformed JSON
        assert through_stack == []
        assert c.get("/v1/streams/s").status_code == 200
        assert through_stack == ["GET /v1/streams/s"]
        metrics = c.get("/metrics").text
    for status in ("200", "413", "400"):
        labels = f'route="/v1/streams/{{stream_id}}/events",status="{status}"'
        lines = [ln.replace('method="POST",', "") for ln in metrics.splitlines()]
        assert any(ln.startswith("liquid_http_requests_total{") and labels in ln for ln in lines)
