"""The service's page in headless Chromium, driven over the Chrome DevTools Protocol.

A real ``liquid serve`` (demo model, in-process store) and a real Chromium: the page opens
``/?stream=...``, subscribes to the live feed over WebSocket, and must show exactly the
predictions that HTTP clients receive. Skipped only when Chromium is not installed
(``apt-get install chromium``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import free_port
from tests.service_process import ServiceProcess

pytestmark = [pytest.mark.browser, pytest.mark.integration]

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)
WAIT_S = 30.0
# Readings of one BasicMotions-like recording (acc_x .. gyr_z), sent 0.1-0.3 s apart.
EVENTS = [
    [0.1, -0.2, 0.3, 0.0, 0.1, 0.0],
    [2.5, -4.0, 1.2, 0.4, -0.3, 1.1],
    [8.0, -9.5, -2.0, 1.5, 0.8, 4.0],
    [12.0, -6.0, -3.5, -1.0, 1.9, 6.5],
    [-3.0, 2.0, 0.5, 0.2, -2.2, -3.0],
]
GAPS = [0.0, 0.1, 0.3, 0.4, 0.6]


def chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None


@dataclass
class Browser:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    def page_ws(self) -> str:
        """The DevTools WebSocket of the first page target."""
        deadline = time.monotonic() + WAIT_S
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chromium exited with {self.proc.returncode}:\n{self.logs()}")
            try:
                targets = httpx.get(f"http://127.0.0.1:{self.port}/json/list", timeout=2).json()
                pages = [t for t in targets if t.get("type") == "page"]
                if pages:
                    return str(pages[0]["webSocketDebuggerUrl"])
            except (httpx.HTTPError, ValueError) as exc:
                last = exc
            time.sleep(0.2)
        raise RuntimeError(f"no DevTools page target after {WAIT_S} s ({last}):\n{self.logs()}")

    def logs(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if self.proc.poll() is not None:
                return
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    exe = chromium()
    if exe is None:
        pytest.skip("chromium is not installed (apt-get install chromium); it drives this test")
    port = free_port()
    log = tmp_path / "chromium.log"
    profile = tmp_path / "profile"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [
                exe,
                *FLAGS,
                f"--user-data-dir={profile}",
                f"--remote-debugging-port={port}",
                "--remote-debugging-address=127.0.0.1",
                "--window-size=1200,1400",
                "about:blank",
            ],
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    b = Browser(proc, port, log)
    try:
        yield b
    finally:
        b.stop()


class DevTools:
    """A minimal CDP client: commands by id, events ignored."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.ids = itertools.count(1)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        cid = next(self.ids)
        await self.ws.send(json.dumps({"id": cid, "method": method, "params": params}))
        while True:
            msg = json.loads(await asyncio.wait_for(self.ws.recv(), WAIT_S))
            if msg.get("id") == cid:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return dict(msg.get("result", {}))

    async def evaluate(self, expression: str) -> Any:
        result = await self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, what: str) -> Any:
        deadline = time.monotonic() + WAIT_S
        value = None
        guarded = f"(() => {{ try {{ return ({expression}); }} catch (e) {{ return null; }} }})()"
        while time.monotonic() < deadline:
            value = await self.evaluate(guarded)  # null while the page is still loading
            if value:
                return value
            await asyncio.sleep(0.1)
        snapshot = await self.evaluate(PAGE_STATE)
        raise AssertionError(f"timed out waiting for {what}; the page shows {snapshot}")


PAGE_STATE = """JSON.stringify({
  state: document.body.dataset.state,
  model: document.body.dataset.model || null,
  modelText: document.getElementById("model").textContent,
  status: document.getElementById("status").textContent,
  predictions: document.getElementById("count-predictions").textContent,
  events: document.getElementById("count-events").textContent,
  latest: document.getElementById("latest-class").textContent,
  rows: Array.from(document.querySelectorAll("#predictions tbody tr"),
                   (tr) => Array.from(tr.cells, (td) => td.textContent)),
  legend: Array.from(document.querySelectorAll("#legend-outputs li"), (li) => li.textContent),
  inked: ["chart-inputs", "chart-outputs"].map((id) => {
    const c = document.getElementById(id);
    const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
    return n;
  }),
})"""


def top_class(outputs: dict[str, float]) -> str:
    return max(outputs, key=lambda k: outputs[k])


async def watch_page(
    browser: Browser, service: ServiceProcess, stream: str, query: str
) -> tuple[dict[str, Any], list[dict[str, Any]], bytes]:
    """Open the page, wait until subscribed, POST the events over HTTP, and return what the
    page shows once it has them, the HTTP answers and a screenshot (PNG)."""
    from websockets.asyncio.client import connect

    async with connect(browser.page_ws(), max_size=64 * 1024 * 1024) as ws:
        cdp = DevTools(ws)
        await cdp.call("Page.enable")
        await cdp.call(
            "Emulation.setDeviceMetricsOverride",
            width=1200,
            height=1400,
            deviceScaleFactor=1,
            mobile=False,
        )
        await cdp.call("Page.navigate", url=f"{service.url}/?stream={stream}{query}")
        await cdp.wait_for("document.body.dataset.state === 'subscribed'", "subscribed")
        await cdp.wait_for("document.body.dataset.model === 'demo'", "the served model")

        answers = []
        t0 = time.time()
        async with httpx.AsyncClient(base_url=service.url, headers=service.headers) as client:
            for x, gap in zip(EVENTS, GAPS, strict=True):
                resp = await client.post(
                    f"/v1/streams/{stream}/events", json={"t": t0 + gap, "x": x}
                )
                assert resp.status_code == 200, resp.text
                answers.append(resp.json())
        n = len(EVENTS)
        await cdp.wait_for(
            f"document.getElementById('count-predictions').textContent === '{n}'",
            f"{n} predictions on the page",
        )
        await asyncio.sleep(0.3)  # one animation frame for the charts
        state = json.loads(await cdp.evaluate(PAGE_STATE))
        png = await cdp.call("Page.captureScreenshot", format="png")
    return state, answers, base64.b64decode(png["data"])


def check_page(state: dict[str, Any], answers: list[dict[str, Any]]) -> None:
    n = len(answers)
    assert state["state"] == "subscribed"
    assert state["status"].startswith("subscribed to")
    assert state["predictions"] == str(n)
    assert state["events"] == str(answers[-1]["count"]) == str(n)
    assert "Model demo" in state["modelText"]
    assert state["legend"] == ["standing", "walking", "running", "badminton"]
    # the table: newest first, each row the HTTP answer of that event
    rows = state["rows"]
    assert len(rows) == n
    for row, answer in zip(rows, reversed(answers), strict=True):
        count, _time, dt, top, p, reset = row
        assert count == str(answer["count"])
        assert float(dt) == pytest.approx(answer["dt"], abs=5e-4)
        assert top == top_class(answer["outputs"])
        assert float(p) == pytest.approx(max(answer["outputs"].values()), abs=5e-4)
        assert reset == (answer["reset"] or "")
    assert state["latest"] == top_class(answers[-1]["outputs"])
    assert rows[-1][5] == "first_event"
    assert all(inked > 500 for inked in state["inked"]), state["inked"]


def test_page_shows_a_streams_predictions_live(
    browser: Browser, demo_service: ServiceProcess, tmp_path: Path
) -> None:
    state, answers, png = asyncio.run(watch_page(browser, demo_service, "test-1", ""))
    check_page(state, answers)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    (tmp_path / "page.png").write_bytes(png)  # to look at: pytest --basetemp=DIR


def test_page_works_with_a_token_in_its_url(
    browser: Browser, keyed_service: ServiceProcess, tmp_path: Path
) -> None:
    from tests.demo.conftest import API_KEY

    state, answers, png = asyncio.run(
        watch_page(browser, keyed_service, "test-2", f"&token={API_KEY}")
    )
    check_page(state, answers)
    (tmp_path / "page-token.png").write_bytes(png)
