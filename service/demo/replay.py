"""``liquid demo``: replay irregular smartwatch recordings into a running service.

Each of ``--streams`` streams (``demo-1``, ``demo-2`` ...) replays BasicMotions test recordings
(irregularly subsampled, see :mod:`service.demo.recordings`) one after the other: before a
recording the stream is deleted, so it starts fresh. Event times are ``now`` plus the readings'
real offsets, so the model sees the recording's true Δt; ``--speed`` only changes how fast the
events are sent (``--speed 2`` sends them twice as fast as they were recorded, with event times
running ahead of the clock). Most streams
POST their events over HTTP; ``--ws-streams`` of them send events on the stream's live
WebSocket, where the service answers. With ``--mqtt URL`` every stream publishes its events to
the broker as SenML packs instead (:mod:`service.demo.mqtt_transport`; the service must run
with ``--mqtt-url`` on the same broker). Every stream is also subscribed to its live feed.

The terminal shows, per stream, the true activity, the top predicted class and its probability,
and round-trip latencies (p50/p95), refreshed in place on a terminal (plain ANSI escapes) and as
one line a second otherwise. At the end: events sent, accuracy against the true activity and
latency. Bounded: at most ``--duration`` seconds and ``--max-events`` events.

Exit codes: 0 done, 1 errors during the replay, 2 the service is unreachable or refused us,
the recordings are missing or the options are invalid.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO
from urllib.parse import urlsplit

import aiomqtt
import httpx

from service.client import AsyncClient, LiveStream, Prediction, RetryPolicy, ServiceError
from service.demo import mqtt_transport
from service.demo import recordings as rec
from service.demo.mqtt_transport import MqttTransport
from service.mqtt.settings import broker_address

PROG = "liquid demo"
MAX_STREAMS = 64
CONNECT_TIMEOUT_S = 5.0
REQUEST_TIMEOUT_S = 10.0
DRAIN_S = 0.5  # after the last event: time for live messages still on their way
REFRESH_S = 0.25
PLAIN_EVERY_S = 1.0
MAX_ERRORS_SHOWN = 3


VIA_LABELS = {"http": "HTTP", "ws": "WebSocket", "mqtt": "MQTT"}


class DemoError(Exception):
    """A problem that ends the demo before it starts (exit code 2)."""


@dataclass(frozen=True)
class Options:
    url: str = "http://127.0.0.1:8000"
    api_key: str | None = None
    streams: int = 4
    ws_streams: int = 1
    speed: float = 1.0
    duration: float = 20.0
    max_events: int = 10_000
    prefix: str = "demo"
    seed: int = 0
    model: str | None = None
    mqtt: str | None = None  # broker URL: every stream sends its events over MQTT

    def __post_init__(self) -> None:
        if not 1 <= self.streams <= MAX_STREAMS:
            raise ValueError(f"--streams must be within 1..{MAX_STREAMS}; got {self.streams}")
        if not 0 <= self.ws_streams <= self.streams:
            raise ValueError(
                f"--ws-streams must be within 0..--streams ({self.streams}); got {self.ws_streams}"
            )
        if not (math.isfinite(self.speed) and 0.01 <= self.speed <= 1000):
            raise ValueError(f"--speed must be within 0.01..1000; got {self.speed}")
        if not (math.isfinite(self.duration) and 0 < self.duration <= 86400):
            raise ValueError(f"--duration must be seconds within (0, 86400]; got {self.duration}")
        if self.max_events < 1:
            raise ValueError(f"--max-events must be >= 1; got {self.max_events}")
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(
                f"--url must be an http(s) URL such as http://127.0.0.1:8000; got {self.url!r}"
            )
        if self.mqtt is not None:
            try:
                broker_address(self.mqtt)
            except ValueError as exc:
                raise ValueError(f"--mqtt: {str(exc).removeprefix('mqtt_url ')}") from None
            if self.ws_streams:
                raise ValueError("--ws-streams must be 0 with --mqtt (every stream uses MQTT)")


# -- what is measured -------------------------------------------------------------------------
@dataclass
class StreamView:
    """One stream's line on the screen and its counts."""

    stream_id: str
    via: str  # "http", "ws" or "mqtt"
    recording: str = ""
    activity: str = ""
    events: int = 0
    correct: int = 0
    predicted: str = ""
    probability: float = math.nan
    dt: float = math.nan
    latency_ms: float = math.nan
    live: int = 0
    recordings_done: int = 0
    last_correct: int = 0
    next_t: float = 0.0  # the earliest event time of the stream's next recording


@dataclass
class Stats:
    """Totals of the run."""

    latencies_ms: dict[str, list[float]] = field(
        default_factory=lambda: {"http": [], "ws": [], "mqtt": []}
    )
    errors: int = 0
    messages: list[str] = field(default_factory=list)
    sent: int = 0

    def error(self, message: str) -> None:
        self.errors += 1
        if message not in self.messages:
            self.messages = [*self.messages, message][-MAX_ERRORS_SHOWN:]


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) with linear interpolation; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def top_class(outputs: Any, names: Sequence[str]) -> tuple[str, float]:
    """The most probable class of a prediction's ``outputs`` (named object or list)."""
    if isinstance(outputs, dict):
        name = max(outputs, key=lambda k: float(outputs[k]))
        return str(name), float(outputs[name])
    values = [float(v) for v in outputs]
    i = max(range(len(values)), key=values.__getitem__)
    return (names[i] if i < len(names) else str(i)), values[i]


# -- rendering (pure) -------------------------------------------------------------------------
def _fmt_ms(v: float) -> str:
    return "-" if math.isnan(v) else f"{v:.1f}"


def latency_text(stats: Stats) -> str:
    parts = []
    for via, label in VIA_LABELS.items():
        values = stats.latencies_ms[via]
        if values:
            parts.append(
                f"{label} p50 {percentile(values, 50):.1f} ms p95 {percentile(values, 95):.1f} ms "
                f"({len(values)})"
            )
    return "; ".join(parts) or "no round trips yet"


def render(
    views: Sequence[StreamView], stats: Stats, elapsed: float, opts: Options, color: bool
) -> list[str]:
    """The screen: a header, one line per stream, totals."""
    green, red, dim, reset = ("\x1b[32m", "\x1b[31m", "\x1b[2m", "\x1b[0m") if color else ("",) * 4
    lines = [
        f"{PROG}: {opts.url}  speed x{opts.speed:g}  {elapsed:5.1f} / {opts.duration:g} s  "
        f"events {stats.sent}  errors {stats.errors}",
        f"{'stream':<12} {'via':<4} {'recording':<9} {'true':<10} {'predicted':<10} {'p':>5} "
        f"{'Δt s':>5} {'ms':>6} {'events':>6} {'acc':>5} {'live':>5}",
    ]
    for v in views:
        ok = v.predicted == v.activity and v.predicted != ""
        mark = f"{green}✓{reset}" if ok else (f"{red}✗{reset}" if v.predicted else " ")
        prob = "-" if math.isnan(v.probability) else f"{v.probability:.2f}"
        dt = "-" if math.isnan(v.dt) else f"{v.dt:.1f}"
        acc = f"{v.correct / v.events:.2f}" if v.events else "-"
        lines.append(
            f"{v.stream_id[:12]:<12} {v.via:<4} {v.recording:<9} {v.activity:<10} "
            f"{v.predicted or '-':<10} {prob:>5} {dt:>5} {_fmt_ms(v.latency_ms):>6} "
            f"{v.events:>6} {acc:>5} {v.live:>5} {mark}"
        )
    lines.append(f"{dim}latency: {latency_text(stats)}{reset}")
    lines += [f"{red}error: {m}{reset}" for m in stats.messages]
    return lines


def summary(views: Sequence[StreamView], stats: Stats, elapsed: float) -> list[str]:
    events = sum(v.events for v in views)
    correct = sum(v.correct for v in views)
    recordings = sum(v.recordings_done for v in views)
    last_ok = sum(v.last_correct for v in views)
    n_ws = sum(v.via == "ws" for v in views)
    n_mqtt = sum(v.via == "mqtt" for v in views)
    rate = events / elapsed if elapsed > 0 else 0.0
    acc = f"{correct / events:.3f} ({correct}/{events})" if events else "- (no events)"
    lines = [
        f"summary: {len(views)} streams ({len(views) - n_ws - n_mqtt} HTTP, {n_ws} WebSocket"
        + (f", {n_mqtt} MQTT), " if n_mqtt else "), ")
        + f"{stats.sent} events sent, {events} predictions in {elapsed:.1f} s ({rate:.1f}/s), "
        f"{stats.errors} errors",
        f"accuracy vs true activity: all events {acc}; last event of each finished recording "
        f"{last_ok}/{recordings}",
        f"latency (round trip): {latency_text(stats)}",
        f"live feed: {sum(v.live for v in views)} predictions received on {len(views)} "
        "subscriptions",
    ]
    lines += [f"error: {m}" for m in stats.messages]
    return lines


class Screen:
    """Redraws the table in place on a terminal; prints a line a second otherwise."""

    def __init__(self, out: TextIO, tty: bool) -> None:
        self.out = out
        self.tty = tty
        self._drawn = 0
        self._last_plain = -math.inf

    def draw(self, lines: list[str], now: float) -> None:
        if self.tty:
            up = f"\x1b[{self._drawn}F" if self._drawn else ""
            self.out.write(up + "".join(f"\x1b[2K{line}\n" for line in lines))
            self._drawn = len(lines)
        elif now - self._last_plain >= PLAIN_EVERY_S:
            self._last_plain = now
            self.out.write(lines[0] + "  |  latency: " + lines[-1].split("latency: ")[-1] + "\n")
        self.out.flush()


# -- the replay -------------------------------------------------------------------------------
def replay_order(recordings: Sequence[rec.Recording], seed: int) -> list[rec.Recording]:
    """Recordings interleaved by activity (standing, walking, running, badminton, standing ...),
    each activity's recordings in a seeded order, so neighbouring streams show different
    activities."""
    import numpy as np

    rng = np.random.RandomState(seed)
    by_activity = [
        [recordings[i] for i in rng.permutation(len(recordings)) if recordings[i].activity == a]
        for a in rec.ACTIVITIES
    ]
    out = []
    for i in range(max(len(group) for group in by_activity)):
        out += [group[i] for group in by_activity if i < len(group)]
    return out


class Replay:
    def __init__(
        self,
        opts: Options,
        recordings: Sequence[rec.Recording],
        outputs: Sequence[str],
        screen: Screen,
        color: bool,
        mqtt: MqttTransport | None = None,
    ) -> None:
        self.opts = opts
        self.mqtt = mqtt
        self.recordings = list(recordings)
        self.outputs = list(outputs)
        self.screen = screen
        self.color = color
        self.stats = Stats()
        n_http = opts.streams - opts.ws_streams
        self.views = [
            StreamView(
                f"{opts.prefix}-{i + 1}",
                "mqtt" if mqtt is not None else ("http" if i < n_http else "ws"),
            )
            for i in range(opts.streams)
        ]
        self.stop = asyncio.Event()
        self.started = time.monotonic()
        self.ended: float | None = None
        self.fatal: str | None = None

    # budget ---------------------------------------------------------------------------------
    def elapsed(self) -> float:
        """Seconds since the replay started (frozen once it ended)."""
        return (self.ended if self.ended is not None else time.monotonic()) - self.started

    def take_event(self) -> bool:
        """Reserve one event of the budget (False: the run is over)."""
        over = self.stats.sent >= self.opts.max_events or self.elapsed() >= self.opts.duration
        if self.stop.is_set() or over:
            self.stop.set()
            return False
        self.stats.sent += 1
        return True

    def record(self, view: StreamView, r: rec.Recording, prediction: Prediction, ms: float) -> None:
        name, prob = top_class(prediction.outputs, self.outputs)
        view.events += 1
        view.correct += name == r.activity
        view.predicted, view.probability = name, prob
        view.dt = prediction.dt
        view.latency_ms = ms

    # transports -----------------------------------------------------------------------------
    async def _send(
        self, via: Any, view: StreamView, event: dict[str, Any]
    ) -> tuple[Prediction | None, float]:
        """Send ``event`` over ``via`` (the HTTP client, the stream's live socket or the MQTT
        transport); its prediction (``None`` when refused, counted as an error) and the round
        trip in ms."""
        kind = view.via
        t0 = time.perf_counter()
        try:
            if kind == "ws":
                sent = via.send(event["t"], event["x"], id=event["id"])
            else:
                sent = via.send(view.stream_id, event["t"], event["x"], id=event["id"])
            prediction = await asyncio.wait_for(sent, REQUEST_TIMEOUT_S)
        except ServiceError as exc:
            status = f" {exc.status}" if exc.status else ""  # MQTT errors have no status
            self.stats.error(
                f"{view.stream_id}: {VIA_LABELS[kind]}{status} {exc.code}: {exc.message}"
            )
            return None, (time.perf_counter() - t0) * 1000.0
        ms = (time.perf_counter() - t0) * 1000.0
        self.stats.latencies_ms[kind].append(ms)
        return prediction, ms

    async def _read_feed(self, feed: LiveStream, view: StreamView) -> None:
        """Count the stream's live predictions until its socket closes."""
        async for _ in feed:
            view.live += 1

    async def _stream(self, client: AsyncClient, index: int, feed: LiveStream) -> None:
        """Replay recordings on stream ``index`` until the run ends."""
        view = self.views[index]
        via: Any = {"ws": feed, "mqtt": self.mqtt}.get(view.via, client)

        async def send(event: dict[str, Any]) -> tuple[Prediction | None, float]:
            return await self._send(via, view, event)

        k = index
        while not self.stop.is_set():
            r = self.recordings[k % len(self.recordings)]
            k += self.opts.streams
            await self._play(client, view, r, send)

    async def _play(
        self, client: AsyncClient, view: StreamView, r: rec.Recording, send: Any
    ) -> None:
        """Replay one recording on ``view``'s stream, starting the stream fresh."""
        try:
            await client.delete(view.stream_id)
        except ServiceError as exc:
            self.stats.error(f"{view.stream_id}: DELETE {exc.status} {exc.code}: {exc.message}")
        view.recording, view.activity = r.name, r.activity
        view.predicted, view.probability = "", math.nan
        t_wall = time.monotonic()
        # Event time: now, or just after the stream's previous recording when --speed > 1 put
        # that one ahead of the clock (so a stream's event times never go back).
        t_event = max(time.time(), view.next_t)
        prediction: Prediction | None = None
        for i in range(len(r)):
            offset = float(r.offsets[i] - r.offsets[0])
            delay = t_wall + offset / self.opts.speed - time.monotonic()
            if delay > 0:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), delay)
            if not self.take_event():
                return
            t = t_event + offset
            view.next_t = t + rec.PERIOD_S
            event = {"t": t, "x": r.features(i), "id": f"{r.name}-{i}"}
            prediction, ms = await send(event)
            if prediction is not None:
                self.record(view, r, prediction, ms)
        if prediction is not None:
            view.recordings_done += 1
            view.last_correct += view.predicted == r.activity

    async def _watch(self) -> None:
        while not self.stop.is_set():
            if self.elapsed() >= self.opts.duration:
                self.stop.set()
                break
            self.screen.draw(self.lines(), time.monotonic())
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.stop.wait(), REFRESH_S)

    def lines(self) -> list[str]:
        return render(self.views, self.stats, self.elapsed(), self.opts, self.color)

    async def open_feeds(
        self, client: AsyncClient, stack: contextlib.AsyncExitStack
    ) -> list[LiveStream]:
        """Subscribe to every stream's live feed (DemoError when the service refuses)."""
        feeds = []
        for view in self.views:
            try:
                feed = await stack.enter_async_context(client.live(view.stream_id))
            except Exception as exc:  # websockets raises its own types (InvalidStatus ...)
                raise DemoError(
                    f"cannot subscribe to {view.stream_id}'s live feed: {_one_line(exc)}"
                ) from None
            feeds.append(feed)
        return feeds

    async def run(self, client: AsyncClient) -> None:
        async with contextlib.AsyncExitStack() as stack:
            feeds = await self.open_feeds(client, stack)
            self.started = time.monotonic()
            readers = [
                asyncio.create_task(self._read_feed(feed, view))
                for feed, view in zip(feeds, self.views, strict=True)
            ]
            watcher = asyncio.create_task(self._watch())
            tasks = [
                asyncio.create_task(self._stream(client, i, feed)) for i, feed in enumerate(feeds)
            ]
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
                for task in done:
                    exc = task.exception()
                    if exc is not None and self.fatal is None:
                        self.fatal = _one_line(exc)
            finally:
                self.stop.set()
                self.ended = time.monotonic()
                # Events in flight get their answers; then nothing more is sent.
                _, late = await asyncio.wait(tasks, timeout=REQUEST_TIMEOUT_S)
                for task in late:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                await watcher
                await asyncio.sleep(DRAIN_S)  # live messages of the last events, on their way
                for reader in readers:
                    reader.cancel()
                await asyncio.gather(*readers, return_exceptions=True)
            self.screen.draw(self.lines(), math.inf)


def _one_line(exc: BaseException | None) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


async def preflight(client: AsyncClient, opts: Options) -> list[str]:
    """Check the service answers and serves a model with the demo's inputs; its output names."""
    try:
        body = await client.models()
    except httpx.TransportError as exc:
        raise DemoError(
            f"cannot reach the service at {opts.url} ({_one_line(exc)}); start it with "
            "`liquid serve` or pass --url"
        ) from None
    except ServiceError as exc:
        if exc.status == 401:
            raise DemoError(
                f"the service at {opts.url} needs an API key: pass --api-key"
                + (" (the one given was refused)" if opts.api_key else "")
            ) from None
        raise DemoError(
            f"GET /v1/models answered {exc.status}: {exc.code}: {exc.message}"
        ) from None
    try:
        name = opts.model or body["default"]
        model = next(m for m in body["models"] if m["name"] == name)
    except (ValueError, KeyError, TypeError, StopIteration):
        raise DemoError(f"{opts.url} does not look like liquidstream (GET /v1/models)") from None
    inputs = model.get("inputs") or []
    if sorted(inputs) != sorted(rec.FEATURES):
        raise DemoError(
            f"model {name!r} takes inputs {inputs or model.get('input_size')}; the demo sends "
            f"{', '.join(rec.FEATURES)}: serve the demo model (`liquid serve` with no --model)"
        )
    outputs = model.get("outputs") or list(rec.ACTIVITIES)
    return [str(o) for o in outputs]


async def run(opts: Options, out: TextIO, tty: bool) -> int:
    try:
        recordings = replay_order(rec.held_out_recordings(), opts.seed)
    except (rec.DataMissingError, ValueError) as exc:
        print(f"{PROG}: cannot load the recordings: {exc}", file=sys.stderr)
        return 2
    async with AsyncClient(
        opts.url,
        api_key=opts.api_key,
        model=opts.model,
        retry=RetryPolicy(),  # events carry ids: a retried one is answered, not re-applied
        timeout=httpx.Timeout(REQUEST_TIMEOUT_S, connect=CONNECT_TIMEOUT_S),
        max_connections=opts.streams + 2,
    ) as client:
        try:
            outputs = await preflight(client, opts)
        except DemoError as exc:
            print(f"{PROG}: {exc}", file=sys.stderr)
            return 2
        async with contextlib.AsyncExitStack() as stack:
            mqtt = None
            if opts.mqtt is not None:
                try:
                    mqtt = await stack.enter_async_context(
                        mqtt_transport.connect(opts.mqtt, rec.FEATURES)
                    )
                except aiomqtt.MqttError as exc:
                    print(f"{PROG}: cannot reach the broker at {opts.mqtt}: {exc}", file=sys.stderr)
                    return 2
            return await _replay(opts, client, recordings, outputs, out, tty, mqtt)


async def _replay(
    opts: Options,
    client: AsyncClient,
    recordings: Sequence[rec.Recording],
    outputs: Sequence[str],
    out: TextIO,
    tty: bool,
    mqtt: MqttTransport | None,
) -> int:
    """Run the replay (after the preflight; over ``mqtt`` when given) and print the summary."""
    replay = Replay(opts, recordings, outputs, Screen(out, tty), color=tty, mqtt=mqtt)
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGINT, replay.stop.set)
    over = f" over MQTT ({opts.mqtt})" if opts.mqtt else ""
    print(
        f"{PROG}: replaying {len(recordings)} irregular BasicMotions test recordings on "
        f"{opts.streams} streams{over}; watch one at {opts.url.rstrip('/')}/?stream="
        f"{replay.views[0].stream_id}",
        file=out,
    )
    try:
        await replay.run(client)
    except DemoError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGINT)
    if replay.fatal:
        replay.stats.error(f"replay stopped: {replay.fatal}")
    for line in summary(replay.views, replay.stats, replay.elapsed()):
        print(line, file=out)
    return 1 if replay.stats.errors else 0


def parser() -> argparse.ArgumentParser:
    d = Options()
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Replay irregular smartwatch recordings (BasicMotions test set) into a "
        "running service over HTTP and WebSocket, with live predictions and latency.",
    )
    p.add_argument("--url", default=d.url, help=f"the service (default {d.url})")
    p.add_argument("--api-key", help="API key, when the service has keys")
    p.add_argument("--streams", type=int, default=d.streams, help=f"streams (default {d.streams})")
    p.add_argument(
        "--ws-streams",
        type=int,
        default=None,
        help="of those, streams that send their events on the WebSocket "
        f"(default {d.ws_streams}, 0 with one stream)",
    )
    p.add_argument(
        "--speed", type=float, default=d.speed, help="replay speed factor (default 1: real time)"
    )
    p.add_argument(
        "--duration",
        type=float,
        default=d.duration,
        help=f"seconds to run (default {d.duration:g})",
    )
    p.add_argument(
        "--max-events", type=int, default=d.max_events, help=f"most events sent ({d.max_events})"
    )
    p.add_argument("--prefix", default=d.prefix, help="stream id prefix (default 'demo')")
    p.add_argument("--model", help="served model to use (default: the service's default)")
    p.add_argument("--seed", type=int, default=d.seed, help="order of the recordings")
    p.add_argument(
        "--mqtt",
        metavar="URL",
        help="broker (mqtt://host:port): every stream publishes its events there as SenML "
        "packs; the service must run with --mqtt-url on the same broker",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    ws_streams = args.ws_streams
    if ws_streams is None:
        ws_streams = 0 if args.mqtt else min(Options().ws_streams, max(args.streams - 1, 0))
    try:
        opts = Options(
            url=args.url,
            api_key=args.api_key,
            streams=args.streams,
            ws_streams=ws_streams,
            speed=args.speed,
            duration=args.duration,
            max_events=args.max_events,
            prefix=args.prefix,
            seed=args.seed,
            model=args.model,
            mqtt=args.mqtt,
        )
    except ValueError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(run(opts, sys.stdout, sys.stdout.isatty()))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
