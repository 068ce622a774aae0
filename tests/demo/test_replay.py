"""``liquid demo``: its pure parts here, and against a real running service (integration)."""

from __future__ import annotations

import io
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from service.demo import recordings as rec
from service.demo import replay
from tests.conftest import free_port
from tests.demo.conftest import API_KEY, REPO, clean_env, has_sktime_data
from tests.service_process import ServiceProcess

needs_data = pytest.mark.skipif(
    not has_sktime_data(), reason="the BasicMotions files come with sktime"
)


def test_percentile_interpolates() -> None:
    assert math.isnan(replay.percentile([], 50))
    assert replay.percentile([3.0], 95) == 3.0
    values = [float(v) for v in range(1, 101)]
    assert replay.percentile(values, 50) == pytest.approx(50.5)
    assert replay.percentile(values, 95) == pytest.approx(95.05)
    assert replay.percentile([4.0, 1.0, 2.0, 3.0], 0) == 1.0


def test_top_class_of_named_and_listed_outputs() -> None:
    assert replay.top_class({"standing": 0.1, "running": 0.7, "walking": 0.2}, []) == (
        "running",
        0.7,
    )
    assert replay.top_class([0.1, 0.2, 0.6, 0.1], list(rec.ACTIVITIES)) == ("running", 0.6)
    assert replay.top_class([0.9, 0.1], []) == ("0", 0.9)


def test_options_are_checked() -> None:
    replay.Options()
    for bad, match in [
        ({"streams": 0}, "--streams"),
        ({"streams": replay.MAX_STREAMS + 1}, "--streams"),
        ({"streams": 2, "ws_streams": 3}, "--ws-streams"),
        ({"speed": 0.0}, "--speed"),
        ({"duration": math.inf}, "--duration"),
        ({"max_events": 0}, "--max-events"),
        ({"url": "localhost:8000"}, "--url"),
    ]:
        with pytest.raises(ValueError, match=match):
            replay.Options(**bad)  # type: ignore[arg-type]


def test_live_url_follows_the_http_url() -> None:
    from service.client.wire import live_url

    assert live_url("http://h:1", "a", {}) == "ws://h:1/v1/streams/a/live"
    assert live_url("https://h/base/", "a b", {"model": "m x"}) == (
        "wss://h/base/v1/streams/a%20b/live?model=m%20x"
    )


def test_replay_order_interleaves_activities() -> None:
    x = np.zeros((8, 4, 6), dtype=np.float32)
    labels = [a for a in rec.ACTIVITIES for _ in range(2)]
    recs = rec.irregular(x, labels, keep=1.0, seed=0, prefix="t")
    order = replay.replay_order(recs, seed=1)
    assert [r.activity for r in order] == list(rec.ACTIVITIES) * 2
    assert sorted(r.name for r in order) == sorted(r.name for r in recs)


def test_render_and_summary() -> None:
    opts = replay.Options(streams=2, ws_streams=1, duration=5)
    views = [replay.StreamView("demo-1", "http"), replay.StreamView("demo-2", "ws")]
    views[0].recording, views[0].activity, views[0].predicted = "test-01", "walking", "walking"
    views[0].probability, views[0].events, views[0].correct = 0.91, 10, 8
    views[0].recordings_done, views[0].last_correct, views[0].live = 1, 1, 10
    stats = replay.Stats()
    stats.sent = 10
    stats.latencies_ms["http"] += [1.0, 2.0, 3.0]
    lines = replay.render(views, stats, 1.5, opts, color=False)
    assert lines[0].startswith("liquid demo: http://127.0.0.1:8000")
    assert "\x1b" not in "".join(lines)
    assert re.search(r"demo-1\s+http\s+test-01\s+walking\s+walking\s+0\.91", lines[2])
    assert lines[2].rstrip().endswith("✓")
    assert "HTTP p50 2.0 ms p95 2.9 ms (3)" in lines[-1]
    colored = replay.render(views, stats, 1.5, opts, color=True)
    assert "\x1b[32m✓\x1b[0m" in colored[2]
    stats.error("demo-2: HTTP 503 unavailable")
    text = "\n".join(replay.summary(views, stats, 2.0))
    assert "2 streams (1 HTTP, 1 WebSocket), 10 events sent, 10 predictions" in text
    assert "all events 0.800 (8/10); last event of each finished recording 1/1" in text
    assert "error: demo-2: HTTP 503 unavailable" in text


def test_screen_redraws_in_place_on_a_terminal() -> None:
    out = io.StringIO()
    screen = replay.Screen(out, tty=True)
    screen.draw(["a", "b"], 0.0)
    screen.draw(["c", "latency: x"], 1.0)
    assert out.getvalue() == "\x1b[2Ka\n\x1b[2Kb\n\x1b[2F\x1b[2Kc\n\x1b[2Klatency: x\n"
    plain = io.StringIO()
    screen = replay.Screen(plain, tty=False)
    for now in (0.0, 0.5, 1.2):
        screen.draw(["head", "latency: y"], now)
    assert plain.getvalue() == "head  |  latency: y\n" * 2


def test_an_unreachable_service_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    if not has_sktime_data():
        pytest.skip("the BasicMotions files come with sktime")
    url = f"http://127.0.0.1:{free_port()}"
    assert replay.main(["--url", url, "--duration", "1"]) == 2
    err = capsys.readouterr().err
    assert f"cannot reach the service at {url}" in err
    assert "liquid serve" in err


def test_missing_recordings_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(rec.importlib.util, "find_spec", lambda name: None)
    assert replay.main(["--duration", "1"]) == 2
    assert "pip install sktime" in capsys.readouterr().err


def test_bad_options_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert replay.main(["--streams", "2", "--ws-streams", "5"]) == 2
    assert "--ws-streams" in capsys.readouterr().err


# -- against a running service ----------------------------------------------------------------
def run_demo(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service", "demo", *args],
        cwd=REPO,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@needs_data
@pytest.mark.integration
def test_demo_replays_into_a_running_service(demo_service: ServiceProcess) -> None:
    proc = run_demo(
        "--url", demo_service.url, "--streams", "2", "--ws-streams", "1", "--duration", "3",
        "--speed", "2", "--prefix", "replay",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "?stream=replay-1" in out
    m = re.search(r"2 streams \(1 HTTP, 1 WebSocket\), (\d+) events sent, (\d+) predictions", out)
    assert m, out
    sent, predicted = int(m.group(1)), int(m.group(2))
    assert sent >= 10
    assert predicted == sent
    assert re.search(r"accuracy vs true activity: all events [01]\.\d{3} \(\d+/\d+\)", out)
    assert re.search(r"HTTP p50 [\d.]+ ms p95 [\d.]+ ms \(\d+\); WebSocket p50 [\d.]+ ms", out)
    live = re.search(r"live feed: (\d+) predictions received on 2 subscriptions", out)
    assert live, out
    assert int(live.group(1)) == predicted, out
    assert ", 0 errors" in out


@needs_data
@pytest.mark.integration
def test_demo_needs_the_key_of_a_keyed_service(keyed_service: ServiceProcess) -> None:
    refused = run_demo("--url", keyed_service.url, "--duration", "1")
    assert refused.returncode == 2
    assert "needs an API key: pass --api-key" in refused.stderr
    proc = run_demo(
        "--url", keyed_service.url, "--api-key", API_KEY, "--streams", "1", "--duration", "1.5",
        "--max-events", "8", "--speed", "5",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 streams (1 HTTP, 0 WebSocket), 8 events sent, 8 predictions" in proc.stdout


def test_the_cli_dispatches_demo(capsys: pytest.CaptureFixture[str]) -> None:
    from service.cli import main

    assert main(["demo", "--help"]) == 0
    assert "--ws-streams" in capsys.readouterr().out
    assert Path(replay.__file__).parent.name == "demo"
