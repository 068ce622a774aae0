"""Strict timestamps at the API (issue 16, item 8): event ``t``, ``?at=`` and state import times
follow the ASCII grammars of ``liquidcore.timestamps``; anything else is a 4xx with the
service's code (``invalid_timestamp``; ``invalid_state`` inside an imported state) and no state
changes."""

from __future__ import annotations

from typing import Any

import pytest

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
X = [20.0, 0.1, 1000.0]


@pytest.fixture
def stream(client: Any) -> dict[str, Any]:
    """A stream ``s`` with one event at ``T0``; returns its exported state."""
    assert client.post("/v1/streams/s/events", json={"t": T0, "x": X}).status_code == 200
    state: dict[str, Any] = client.get("/v1/streams/s/state").json()
    return state


def post_json_put(client: Any, doc: dict[str, Any]) -> Any:
    return client.put("/v1/streams/s/state", json=doc)


BAD_EVENT_TIMES = [
    "１７６７２２５６１０",  # full-width digits
    "1767225610",  # a numeric string in a body (a body time is a number or RFC 3339)
    "1_767_225_610",
    "２０２６-01-01T00:00:10Z",
    "2026-01-01T00:00:10",  # no offset
    " 2026-01-01T00:00:10Z",
    "2026-01-01T00:00:10Z\n",
    "2026-01-01T00:00:60Z",
    "nan",
    "Infinity",
    "2026-01-01T00:00:10Z" + " " * 100,
]


@pytest.mark.parametrize("t", BAD_EVENT_TIMES)
def test_bad_event_time_is_422_and_changes_nothing(
    client: Any, stream: dict[str, Any], t: str
) -> None:
    r = client.post("/v1/streams/s/events", json={"t": t, "x": X})
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "invalid_timestamp"
    assert r.json()["error"]["details"]["field"] == "t"
    assert client.get("/v1/streams/s/state").json() == stream


def test_bad_time_in_a_batch_applies_none(client: Any, stream: dict[str, Any]) -> None:
    events = [{"t": T0 + 1, "x": X}, {"t": "１７６７２２５６１０", "x": X}]
    r = client.post("/v1/streams/s/events", json=events)
    assert r.status_code == 422
    assert r.json()["error"]["details"]["field"] == "events[1].t"
    assert client.get("/v1/streams/s/state").json() == stream


def test_rfc3339_event_time_is_accepted(client: Any, stream: dict[str, Any]) -> None:
    r = client.post("/v1/streams/s/events", json={"t": "2026-01-01T01:00:10+01:00", "x": X})
    assert r.status_code == 200
    assert (r.json()["t"], r.json()["dt"]) == (T0 + 10, 10.0)


@pytest.mark.parametrize(
    "at",
    [
        "1_767_225_700",
        "１７６７２２５７００",
        "+1767225700",
        "%2B1767225700",
        "%201767225700",
        "1767225700%20",
        "nan",
        "inf",
        "0x10",
        "1767225700.",
        "2026-01-01",
        "1e400",
    ],
)
def test_bad_at_is_422(client: Any, stream: dict[str, Any], at: str) -> None:
    r = client.get(f"/v1/streams/s/prediction?at={at}")
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "invalid_timestamp"
    assert client.get("/v1/streams/s/state").json() == stream


@pytest.mark.parametrize(
    ("at", "dt"),
    [
        ("1767225700", 100.0),
        ("1767225700.5", 100.5),
        ("1.7672257e9", 100.0),
        ("2026-01-01T00:01:40Z", 100.0),
        ("2026-01-01T01:01:40%2B01:00", 100.0),
        ("2026-01-01T01:01:40+01:00", 100.0),  # an unescaped '+' arrives as a space
    ],
)
def test_good_at_is_answered(client: Any, stream: dict[str, Any], at: str, dt: float) -> None:
    r = client.get(f"/v1/streams/s/prediction?at={at}")
    assert r.status_code == 200, r.text
    assert r.json()["dt"] == pytest.approx(dt, abs=1e-6)


@pytest.mark.parametrize("field", ["last_t", "created", "updated"])
@pytest.mark.parametrize("value", ["１７６７２２５６００", "1767225600", "2026-01-01T00:00:00"])
def test_bad_time_in_an_imported_state_is_422(
    client: Any, stream: dict[str, Any], field: str, value: str
) -> None:
    r = post_json_put(client, {**stream, field: value})
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "invalid_state"
    assert r.json()["error"]["details"]["field"] == field
    assert client.get("/v1/streams/s/state").json() == stream


def test_bad_time_in_an_imported_recent_entry_is_422(client: Any, stream: dict[str, Any]) -> None:
    doc = {
        **stream,
        "recent": [{"id": "a", "t": "１７６７２２５６００", "dt": 0.5, "y": [0, 0], "count": 1}],
    }
    r = post_json_put(client, doc)
    assert r.status_code == 422
    assert r.json()["error"]["details"]["field"] == "recent[0].t"
    assert client.get("/v1/streams/s/state").json() == stream


def test_rfc3339_times_in_an_imported_state(client: Any, stream: dict[str, Any]) -> None:
    r = post_json_put(client, {**stream, "last_t": "2026-01-01T00:00:05Z"})
    assert r.status_code == 200, r.text
    assert client.get("/v1/streams/s/state").json()["last_t"] == T0 + 5


def test_full_width_digits_in_a_json_number_are_invalid_json(
    client: Any, stream: dict[str, Any]
) -> None:
    raw = '{"t": １７６７２２５６１０, "x": [20.0, 0.1, 1000.0]}'.encode()
    r = client.post(
        "/v1/streams/s/events", content=raw, headers={"content-type": "application/json"}
    )
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "invalid_json"
    assert client.get("/v1/streams/s/state").json() == stream
