"""Every route's happy path, parity with the model run offline, and the stream semantics
(out of order, duplicates, gaps, expiry, model change), each seen in the response and in the
metrics."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from service.app import create_app
from service.store import MemoryStore
from tests.service_api.conftest import (
    OUTPUTS,
    assert_close,
    load,
    make_client,
    metric_value,
    offline_outputs,
    outputs_list,
)

T0 = 1_714_564_800.0


def ev(t: float | str, x: list[float] | dict[str, float], **kw: Any) -> dict[str, Any]:
    return {"t": t, "x": x, **kw}


def random_events(n: int, seed: int, t0: float = T0) -> list[tuple[float, list[float]]]:
    rng = random.Random(seed)
    t = t0
    out = []
    for i in range(n):
        # irregular: bursts, equal timestamps, long pauses
        t += rng.choice([0.0, 0.001, 0.05, 0.3, 1.7, 12.5, 40.0]) if i else 0.0
        out.append((t, [rng.gauss(20, 5), rng.gauss(0, 1), rng.gauss(1000, 300)]))
    return out


def metrics_text(client: Any) -> str:
    r = client.get("/metrics")
    assert r.status_code == 200
    return str(r.text)


# -- happy paths ------------------------------------------------------------------------------
def test_post_one_event_returns_a_prediction(client: Any) -> None:
    r = client.post("/v1/streams/pump-1/events", json=ev(T0, [20.0, 0.1, 1000.0], id="e1"))
    assert r.status_code == 200
    p = r.json()
    assert p["stream_id"] == "pump-1"
    assert p["t"] == T0
    assert p["time"] == "2024-05-01T12:00:00.000000Z"
    assert p["dt"] == 0.5  # the model's default Δt for a first event
    assert set(p["outputs"]) == set(OUTPUTS)
    assert p["model"] == "pump"
    assert len(p["version"]) == 16
    assert p["duplicate"] is False
    assert p["reset"] == "first_event"
    assert p["id"] == "e1"
    assert p["count"] == 1


def test_post_list_and_events_object(client: Any) -> None:
    r = client.post("/v1/streams/a/events", json=[ev(T0, [1, 2, 3]), ev(T0 + 1, [1, 2, 3])])
    body = r.json()
    assert r.status_code == 200
    assert [x["status"] for x in body["results"]] == [200, 200]
    assert body["applied"] == 2
    assert body["duplicates"] == 0
    assert body["failed"] == 0
    assert [x["prediction"]["count"] for x in body["results"]] == [1, 2]
    r = client.post("/v1/streams/a/events", json={"events": [ev(T0 + 2.5, [1, 2, 3])]})
    assert r.status_code == 200
    assert r.json()["results"][0]["prediction"]["dt"] == 1.5
    assert client.post("/v1/streams/a/events", json=[]).json()["results"] == []


def test_rfc3339_and_named_features_equal_epoch_and_list(client: Any) -> None:
    a = client.post("/v1/streams/a/events", json=ev(T0, [21.5, 0.2, 900.0])).json()
    b = client.post(
        "/v1/streams/b/events",
        json=ev("2024-05-01T14:00:00+02:00", {"rpm": 900.0, "temp": 21.5, "vib": 0.2}),
    ).json()
    assert b["t"] == T0
    assert a["outputs"] == b["outputs"]
    a2 = client.post("/v1/streams/a/events", json=ev(T0 + 0.25, [21.0, 0.1, 950.0])).json()
    b2 = client.post(
        "/v1/streams/b/events", json=ev("2024-05-01T12:00:00.25Z", [21.0, 0.1, 950.0])
    ).json()
    assert a2["dt"] == b2["dt"] == 0.25
    assert a2["outputs"] == b2["outputs"]


def test_stream_metadata(client: Any) -> None:
    before = time.time()
    client.post("/v1/streams/m/events", json=[ev(T0, [1, 2, 3]), ev(T0 + 3, [1, 2, 3])])
    r = client.get("/v1/streams/m")
    assert r.status_code == 200
    info = r.json()
    assert info["stream_id"] == "m"
    assert info["model"] == "pump"
    assert info["count"] == 2
    assert info["last_t"] == T0 + 3
    assert info["last_time"] == "2024-05-01T12:00:03.000000Z"
    assert info["created"] <= info["updated"] < info["expires_at"]
    assert info["created"][:4] == time.strftime("%Y", time.gmtime(before))
    assert client.get("/v1/streams/nobody").json()["error"]["code"] == "not_found"


def test_prediction_at_leaves_the_state_unchanged(client: Any, artifacts: dict[str, Path]) -> None:
    events = random_events(5, seed=1)
    for t, x in events:
        client.post("/v1/streams/p/events", json=ev(t, x))
    state = client.get("/v1/streams/p/state").json()
    last_t = events[-1][0]
    r = client.get("/v1/streams/p/prediction", params={"at": str(last_t + 2.0)})
    assert r.status_code == 200
    p = r.json()
    assert p["dt"] == 2.0
    assert p["count"] == 5
    assert p["duplicate"] is False
    # the same as applying the last input again after 2 s, offline
    model = load(artifacts["pump"])
    want = offline_outputs(model, [*events, (last_t + 2.0, events[-1][1])])[-1]
    assert_close([outputs_list(p)], [want])
    # RFC 3339 works, and nothing changed
    iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(last_t + 2.0))
    frac = f"{(last_t + 2.0) % 1:.6f}"[1:]
    r2 = client.get("/v1/streams/p/prediction", params={"at": f"{iso}{frac}Z"})
    assert r2.json()["outputs"] == p["outputs"]
    assert client.get("/v1/streams/p/state").json() == state
    # before the last event: invalid_time; unknown stream: not_found
    r = client.get("/v1/streams/p/prediction", params={"at": last_t - 1})
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "invalid_time"
    assert client.get("/v1/streams/q/prediction").json()["error"]["code"] == "not_found"


def test_state_export_import_roundtrip(client: Any) -> None:
    events = random_events(6, seed=2)
    for t, x in events:
        client.post("/v1/streams/src/events", json=ev(t, x, id=f"id-{t}"))
    snap = client.get("/v1/streams/src/state").json()
    assert snap["count"] == 6
    assert len(snap["h"]) == 8
    assert snap["x_last"] == np.asarray(events[-1][1], dtype=np.float32).tolist()
    assert [e["id"] for e in snap["recent"]] == [f"id-{t}" for t, _ in events]
    r = client.put("/v1/streams/dst/state", json=snap)
    assert r.status_code == 200
    assert r.json()["count"] == 6
    assert r.json()["stream_id"] == "dst"
    copy = client.get("/v1/streams/dst/state").json()
    assert copy["h"] == snap["h"]
    assert copy["x_last"] == snap["x_last"]
    nxt = ev(events[-1][0] + 1.25, [3.0, 2.0, 1.0])
    a = client.post("/v1/streams/src/events", json=nxt).json()
    b = client.post("/v1/streams/dst/events", json=nxt).json()
    assert a["outputs"] == b["outputs"]
    assert a["count"] == b["count"] == 7
    # the dedupe window moved along: a retry on the copy is a duplicate with the original answer
    t, x = events[2]
    dup = client.post("/v1/streams/dst/events", json=ev(t, x, id=f"id-{t}")).json()
    assert dup["duplicate"] is True
    assert dup["count"] == 3


def test_delete_stream(client: Any) -> None:
    client.post("/v1/streams/d/events", json=ev(T0, [1, 2, 3]))
    assert client.delete("/v1/streams/d").status_code == 204
    assert client.get("/v1/streams/d").status_code == 404
    r = client.delete("/v1/streams/d")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"
    again = client.post("/v1/streams/d/events", json=ev(T0 - 100, [1, 2, 3])).json()
    assert again["reset"] == "first_event"
    assert again["count"] == 1


def test_models_route_and_model_selection(make_settings: Any, artifacts: dict[str, Path]) -> None:
    settings = make_settings(models=[artifacts["pump"], artifacts["plain"]])
    with make_client(create_app(settings)) as c:
        body = c.get("/v1/models").json()
        assert body["default"] == "pump"
        pump, plain = body["models"]
        assert pump == {
            "name": "pump",
            "version": load(artifacts["pump"]).version,
            "default": True,
            "input_size": 3,
            "inputs": ["temp", "vib", "rpm"],
            "output_size": 2,
            "outputs": ["risk", "load"],
            "state_size": 8,
            "time_unit": 1.0,
            "default_dt": 0.5,
        }
        assert plain["name"] == "plain"
        assert plain["inputs"] is None
        assert not plain["default"]
        r = c.post("/v1/streams/s/events?model=plain", json=ev(T0, [1.0, 2.0]))
        assert r.status_code == 200
        assert r.json()["model"] == "plain"
        assert isinstance(r.json()["outputs"], list)
        # states are per model: the default model has no stream "s"
        assert c.get("/v1/streams/s").status_code == 404
        assert c.get("/v1/streams/s?model=plain").json()["count"] == 1
        r = c.post("/v1/streams/s/events?model=nope", json=ev(T0, [1.0, 2.0]))
        assert r.status_code == 404
        assert r.json()["error"]["code"] == "unknown_model"
        r = c.post("/v1/streams/s/events?model=plain", json=ev(T0 + 1, {"a": 1.0}))
        assert r.json()["error"]["code"] == "invalid_event"  # unnamed features: a list only


def test_health_readiness_and_metrics(client: Any) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    r = client.get("/readyz")
    assert r.status_code == 200
    assert r.json() == {
        "status": "ready",
        "checks": {"store": True, "store_writable": True, "models": True, "engine": True},
    }
    r = client.get("/metrics")
    assert r.headers["content-type"].startswith("text/plain")
    assert "liquid_model_info" in r.text


def test_not_ready_answers_503(make_settings: Any) -> None:
    class DownStore(MemoryStore):
        async def ping(self) -> bool:
            return False

    with make_client(create_app(make_settings(), store=DownStore())) as c:
        r = c.get("/readyz")
        assert r.status_code == 503
        assert r.json()["checks"]["store"] is False
        assert metric_value(c.get("/metrics").text, "liquid_state_store_up") == 0


def test_openapi_documents_the_api(client: Any) -> None:
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    for path, method in [
        ("/v1/streams/{stream_id}/events", "post"),
        ("/v1/events", "post"),
        ("/v1/streams/{stream_id}", "get"),
        ("/v1/streams/{stream_id}", "delete"),
        ("/v1/streams/{stream_id}/prediction", "get"),
        ("/v1/streams/{stream_id}/state", "get"),
        ("/v1/streams/{stream_id}/state", "put"),
        ("/v1/models", "get"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
    ]:
        op = paths[path][method]
        assert op.get("description") or op.get("summary"), (path, method)
    body = paths["/v1/streams/{stream_id}/events"]["post"]["requestBody"]["content"]
    assert body["application/json"]["examples"]
    schemas = spec["components"]["schemas"]
    for name in (
        "EventIn",
        "EventBatchIn",
        "MultiEventBatchIn",
        "StateIn",
        "PredictionOut",
        "ErrorOut",
        "BatchResultsOut",
    ):
        assert name in schemas, name
    assert schemas["EventIn"]["examples"]
    assert "HTTPBearer" in spec["components"]["securitySchemes"]
    assert client.get("/docs").status_code == 200


# -- parity with the model run offline --------------------------------------------------------
# Several streams in one batched step: BLAS sums a [B, F] x [F, H] product in an order that
# depends on B, so a stream's float32 outputs can differ from a one-stream step by ~5e-7 per
# step, compounding over a sequence. One stream's events (one at a time or in lists) match the
# offline step to 1e-6; mixed batches to this tolerance (float32 noise; the float64 reference
# is about as far from either).
MIXED_BATCH_TOL = 1e-5


def check_parity(c: Any, model: Any) -> None:
    """One stream sent one event at a time and in lists (1e-6); two streams interleaved in
    /v1/events requests (float32 noise of batching, see MIXED_BATCH_TOL)."""
    a = random_events(24, seed=11)
    got_a: list[list[float]] = []
    for i in range(0, 24, 6):
        for t, x in a[i : i + 2]:
            got_a.append(outputs_list(c.post("/v1/streams/a/events", json=ev(t, x)).json()))
        res = c.post("/v1/streams/a/events", json=[ev(t, x) for t, x in a[i + 2 : i + 6]]).json()
        got_a += [outputs_list(r["prediction"]) for r in res["results"]]
    assert_close(got_a, offline_outputs(model, a), tol=1e-6)

    b = random_events(24, seed=12, t0=T0 + 5)
    d = random_events(24, seed=13, t0=T0 + 7)
    got: dict[str, list[list[float]]] = {"b": [], "d": []}
    for i in range(0, 24, 4):
        items = []
        for (tb, xb), (td, xd) in zip(b[i : i + 4], d[i : i + 4], strict=True):
            items += [{"stream_id": "b", **ev(tb, xb)}, {"stream_id": "d", **ev(td, xd)}]
        res = c.post("/v1/events", json={"events": items}).json()
        for item in res["results"]:
            assert item["status"] == 200, item
            got[item["stream_id"]].append(outputs_list(item["prediction"]))
    assert_close(got["b"], offline_outputs(model, b), tol=MIXED_BATCH_TOL)
    assert_close(got["d"], offline_outputs(model, d), tol=MIXED_BATCH_TOL)


def test_predictions_equal_offline_step(client: Any, artifacts: dict[str, Path]) -> None:
    check_parity(client, load(artifacts["pump"]))


@pytest.mark.integration
def test_predictions_equal_offline_step_with_redis(
    make_settings: Any, artifacts: dict[str, Path], redis_url: str
) -> None:
    with make_client(create_app(make_settings(redis_url=redis_url))) as c:
        check_parity(c, load(artifacts["pump"]))
        assert c.get("/readyz").status_code == 200


# -- stream semantics: response and metric ----------------------------------------------------
def test_out_of_order_is_409_untouched_and_counted(client: Any) -> None:
    client.post("/v1/streams/o/events", json=ev(T0 + 10, [1, 2, 3]))
    state = client.get("/v1/streams/o/state").json()
    r = client.post("/v1/streams/o/events", json=ev(T0 + 5, [1, 2, 3], id="late"))
    assert r.status_code == 409
    err = r.json()["error"]
    assert err["code"] == "out_of_order"
    assert err["details"] == {"last_t": T0 + 10, "id": "late"}
    assert client.get("/v1/streams/o/state").json() == state
    # in a batch: per item
    res = client.post("/v1/streams/o/events", json=[ev(T0 + 11, [1, 2, 3]), ev(T0, [1, 2, 3])])
    assert [x["status"] for x in res.json()["results"]] == [200, 409]
    m = metrics_text(client)
    assert metric_value(m, "liquid_events_total", {"outcome": "out_of_order"}) == 2
    assert metric_value(m, "liquid_events_total", {"outcome": "applied"}) == 2
    assert metric_value(m, "liquid_http_requests_total", {"status": "409"}) == 1


def test_retried_batch_gets_the_same_answers_marked_duplicate(client: Any) -> None:
    batch = [ev(T0 + i, [1.0 + i, 2, 3], id=f"e{i}") for i in range(4)]
    first = client.post("/v1/streams/r/events", json=batch).json()
    state = client.get("/v1/streams/r/state").json()
    again = client.post("/v1/streams/r/events", json=batch).json()
    assert again["duplicates"] == 4
    assert again["applied"] == 0
    for a, b in zip(first["results"], again["results"], strict=True):
        pa, pb = a["prediction"], b["prediction"]
        assert pb["duplicate"] is True
        assert pa["duplicate"] is False
        assert {k: v for k, v in pa.items() if k != "duplicate"} == {
            k: v for k, v in pb.items() if k != "duplicate"
        }
    assert client.get("/v1/streams/r/state").json() == state
    one = client.post("/v1/streams/r/events", json=batch[1]).json()
    assert one["duplicate"] is True
    assert one["count"] == 2
    m = metrics_text(client)
    assert metric_value(m, "liquid_events_total", {"outcome": "duplicate"}) == 5


def test_gap_resets_the_state(make_settings: Any, artifacts: dict[str, Path]) -> None:
    events = [
        (T0, [20.0, 0.0, 900.0]),
        (T0 + 4, [21.0, 0.5, 950.0]),
        (T0 + 20, [22.0, 0.1, 1000.0]),
        (T0 + 21, [22.0, 0.2, 1010.0]),
    ]
    with make_client(create_app(make_settings(max_gap_s=10.0))) as c:
        preds = [c.post("/v1/streams/g/events", json=ev(t, x)).json() for t, x in events]
        assert [p["reset"] for p in preds] == ["first_event", None, "gap", None]
        assert [p["dt"] for p in preds] == [0.5, 4.0, 0.5, 1.0]
        assert [p["count"] for p in preds] == [1, 2, 3, 4]  # a gap reset keeps the stream going
        want = offline_outputs(load(artifacts["pump"]), events, max_gap_s=10.0)
        assert_close([outputs_list(p) for p in preds], want)
        m = metrics_text(c)
        assert metric_value(m, "liquid_stream_resets_total", {"reason": "gap"}) == 1
        assert metric_value(m, "liquid_events_total", {"outcome": "reset"}) == 1


def test_idle_stream_expires(make_settings: Any) -> None:
    with make_client(create_app(make_settings(state_ttl_s=0.3))) as c:
        c.post("/v1/streams/x/events", json=ev(T0, [1, 2, 3]))
        assert c.get("/v1/streams/x").status_code == 200
        time.sleep(0.45)
        assert c.get("/v1/streams/x").status_code == 404
        p = c.post("/v1/streams/x/events", json=ev(T0 + 1, [1, 2, 3])).json()
        assert p["reset"] == "expired"
        assert p["count"] == 1
        assert p["dt"] == 0.5
        m = metrics_text(c)
        assert metric_value(m, "liquid_stream_resets_total", {"reason": "expired"}) == 1


def test_model_change_restarts_the_stream(make_settings: Any, artifacts: dict[str, Path]) -> None:
    store = MemoryStore()
    with make_client(create_app(make_settings(), store=store)) as c:
        c.post("/v1/streams/mc/events", json=[ev(T0, [1, 2, 3]), ev(T0 + 1, [1, 2, 3])])
        v1 = c.get("/v1/streams/mc").json()["version"]
    with make_client(create_app(make_settings(models=[artifacts["pump_v2"]]), store=store)) as c:
        # the state of the old version is not used for predictions ahead
        r = c.get("/v1/streams/mc/prediction", params={"at": T0 + 2})
        assert r.status_code == 422
        assert r.json()["error"]["code"] == "invalid_state"
        p = c.post("/v1/streams/mc/events", json=ev(T0 + 2, [1, 2, 3])).json()
        assert p["reset"] == "model_change"
        assert p["count"] == 1
        assert p["version"] != v1
        assert c.get("/v1/streams/mc").json()["version"] == p["version"]
        m = metrics_text(c)
        assert metric_value(m, "liquid_stream_resets_total", {"reason": "model_change"}) == 1


def test_metrics_after_a_run_show_every_series(client: Any) -> None:
    for t, x in random_events(10, seed=5):
        client.post("/v1/streams/run/events", json=ev(t, x))
    client.post("/v1/streams/run/events", json=ev(T0 - 1, [1, 2, 3]))
    client.get("/v1/streams/run")
    client.get("/v1/streams/run/prediction", params={"at": T0 + 10_000})
    client.post(
        "/v1/streams/run/events", content=b"{", headers={"content-type": "application/json"}
    )
    m = metrics_text(client)
    series = [
        "liquid_http_requests_total",
        "liquid_http_request_duration_seconds_bucket",
        "liquid_events_total",
        "liquid_stream_resets_total",
        "liquid_state_conflicts_total",
        "liquid_queue_wait_seconds_bucket",
        "liquid_batch_compute_seconds_bucket",
        "liquid_state_store_seconds_bucket",
        "liquid_batch_size_bucket",
        "liquid_event_dt_seconds_bucket",
        "liquid_event_lag_seconds_bucket",
        "liquid_active_streams",
        "liquid_websocket_connections",
        "liquid_live_messages_dropped_total",
        "liquid_model_info",
        "liquid_state_store_up",
    ]
    for name in series:
        metric_value(m, name)  # present
    route = "/v1/streams/{stream_id}/events"
    assert metric_value(m, "liquid_http_requests_total", {"route": route, "status": "200"}) == 10
    assert metric_value(m, "liquid_http_requests_total", {"route": route, "status": "409"}) == 1
    assert metric_value(m, "liquid_http_requests_total", {"route": route, "status": "400"}) == 1
    assert metric_value(m, "liquid_http_request_duration_seconds_count", {"route": route}) == 12
    assert "stream_id=" not in m
    assert "/v1/streams/run" not in m
    assert metric_value(m, "liquid_events_total", {"outcome": "applied"}) == 10
    assert metric_value(m, "liquid_batch_size_count") >= 1
    assert metric_value(m, "liquid_batch_size_sum") == 11
    assert metric_value(m, "liquid_event_dt_seconds_count") == 10
    assert metric_value(m, "liquid_active_streams") == 1
    assert metric_value(m, "liquid_websocket_connections") == 0
    assert metric_value(m, "liquid_model_info", {"model": "pump"}) == 1
    assert metric_value(m, "liquid_state_store_up") == 1
    assert metric_value(m, "liquid_state_store_seconds_count", {"op": "load"}) >= 1
    assert metric_value(m, "liquid_state_store_seconds_count", {"op": "save"}) >= 1
    lag = metric_value(m, "liquid_event_lag_seconds_sum")
    assert lag > 10 * (time.time() - T0 - 100_000)  # events from 2024: a lag of years
