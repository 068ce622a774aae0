"""No API key in any log line: the redaction rules, the filter on real records, and the log of
a real ``liquid serve`` process at ``trace`` level (uvicorn's access log, its WebSocket lines
and its ASGI message log) after requests that carry the key in every place a client puts it."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
from uvicorn.logging import AccessFormatter
from websockets.sync.client import connect

from service.api.redaction import REDACTED, RedactSecrets, redact

KEY = "sk-live-0123456789abcdef"


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ('127.0.0.1:5 - "GET /v1/streams/a/live?token=abc123xyz&model=pump HTTP/1.1" 101', "model"),
        ("WebSocket /v1/streams/a/live?model=pump&access_token=abc123xyz [accepted]", "model"),
        ("GET /x?api_key=abc123xyz", "GET /x"),
        ("Authorization: Bearer abc123xyz", "Authorization"),
        ("headers=[(b'authorization', b'Bearer abc123xyz'), (b'host', b'x')]", "b'host'"),
        ("{'authorization': 'abc123xyz', 'host': 'x'}", "'host'"),
        ("query_string: b'token=abc123xyz'", "query_string"),
    ],
)
def test_credentials_are_redacted(text: str, kept: str) -> None:
    clean = redact(text)
    assert "abc123xyz" not in clean
    assert REDACTED in clean
    assert kept in clean


def test_configured_keys_are_redacted_wherever_they_appear() -> None:
    text = f"stream {KEY} and path /v1/{KEY.replace('-', '%2D')}"
    assert (
        redact(text, [KEY, KEY.replace("-", "%2D")]) == f"stream {REDACTED} and path /v1/{REDACTED}"
    )
    assert redact("a basic check of 3 streams") == "a basic check of 3 streams"


def test_the_filter_keeps_records_formattable() -> None:
    """uvicorn's access formatter reads the arguments as a tuple, %d included."""
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", f"/v1/streams/a/live?token={KEY}", "1.1", 200),
        None,
    )
    assert RedactSecrets([KEY]).filter(record)
    line = AccessFormatter('%(client_addr)s - "%(request_line)s" %(status_code)s').format(record)
    assert KEY not in line
    assert f"/v1/streams/a/live?token={REDACTED}" in line
    assert line.endswith("200 OK")


def test_the_filter_redacts_tracebacks() -> None:
    try:
        raise ValueError(f"bad key {KEY}")
    except ValueError as exc:
        record = logging.LogRecord(
            "service", logging.ERROR, __file__, 1, "failed", None, (type(exc), exc, None)
        )
    RedactSecrets([KEY]).filter(record)
    assert KEY not in logging.Formatter().format(record)


@pytest.mark.integration
@pytest.mark.parametrize("level", ["info", "trace"])
def test_no_key_in_the_log_of_a_real_server(
    services: Any, artifacts: dict[str, Path], level: str
) -> None:
    service = services(["--model", str(artifacts["pump"]), "--log-level", level], api_key=KEY)
    base = service.url
    ws_base = base.replace("http://", "ws://")
    with httpx.Client(base_url=base) as c:
        auth = {"Authorization": f"Bearer {KEY}"}
        assert c.post("/v1/streams/r/events", json={"t": 1.0, "x": [1, 2, 3]}, headers=auth)
        assert c.get("/v1/streams/r", headers=auth).status_code == 200
        assert c.get(f"/v1/streams/r?token={KEY}").status_code == 401  # HTTP takes no token
        assert c.get(f"/v1/streams/r?api_key={KEY}&model=pump").status_code == 401
        assert c.get("/v1/streams/r", headers={"Authorization": KEY}).status_code == 401
    with connect(f"{ws_base}/v1/streams/r/live?token={KEY}") as ws:
        assert '"subscribed"' in str(ws.recv(timeout=10))
    with connect(f"{ws_base}/v1/streams/r/live", additional_headers=auth) as ws:
        assert '"subscribed"' in str(ws.recv(timeout=10))
    service.stop()  # flush and close the log
    log = service.log.read_text()
    assert KEY not in log
    # the lines are there, with the key redacted
    assert f"/v1/streams/r?token={REDACTED}" in log
    assert f"/v1/streams/r/live?token={REDACTED}" in log
