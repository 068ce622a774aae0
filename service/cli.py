"""The ``liquid`` command: ``serve`` here; ``train`` and ``evaluate`` from ``liquidcore.train``.

Subcommands come from a dispatch table (:data:`COMMANDS`), each taking its own argument list,
so a new one (e.g. ``demo``) is one entry.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

PROG = "liquid"

Command = Callable[[list[str]], int]


# -- serve -----------------------------------------------------------------------------------
def serve_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=f"{PROG} serve",
        description="Serve liquid models over HTTP and WebSocket. Options override LIQUID_* "
        "environment variables.",
    )
    p.add_argument("--host", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="TCP port (default 8000)")
    p.add_argument(
        "--workers",
        type=int,
        help="worker processes (needs --redis-url when > 1; default: 1, or with --redis-url "
        "one per two cores)",
    )
    p.add_argument(
        "--torch-threads",
        type=int,
        help="torch intra-op threads per worker (default: its cores less one, 1 to 4)",
    )
    p.add_argument(
        "--model",
        dest="models",
        action="append",
        metavar="PATH",
        help="model artifact directory (repeatable; the first is the default model). "
        "Default: the demo model",
    )
    p.add_argument(
        "--redis-url",
        help="Redis URL, or redis+cluster://host:port[,host:port...] for a Redis Cluster "
        "(default: an in-process store)",
    )
    p.add_argument(
        "--redis-min-replicas-ack",
        type=int,
        help="replicas that must have a batch's writes (WAIT) before it is answered (default 0)",
    )
    p.add_argument(
        "--redis-replica-ack-timeout-ms",
        type=int,
        help="longest wait for those replica acknowledgements (ms, default 1000)",
    )
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--api-keys", help="'key1:tenantA,key2:tenantB' or a JSON object")
    p.add_argument(
        "--allow-insecure",
        action="store_true",
        default=None,
        help="serve without API keys on a non-loopback address",
    )
    p.add_argument("--max-batch", type=int, help="most events in one batched step")
    p.add_argument("--max-delay-ms", type=float, help="longest wait for a batch to fill (ms)")
    p.add_argument("--state-ttl-s", type=float, help="idle streams expire after this (s)")
    p.add_argument("--max-gap-s", type=float, help="a longer gap resets a stream (s)")
    p.add_argument("--first-event-dt-s", type=float, help="Δt of a stream's first event (s)")
    p.add_argument("--dedupe-window", type=int, help="recent event ids kept per stream")
    p.add_argument("--max-body-bytes", type=int, help="largest request body (bytes)")
    p.add_argument("--max-events-per-request", type=int, help="most events in one request")
    p.add_argument("--live-buffer", type=int, help="messages buffered per live subscriber")
    p.add_argument("--header-timeout-s", type=float, help="time to send request headers (s)")
    p.add_argument("--body-timeout-s", type=float, help="time to send a request body (s)")
    p.add_argument("--keep-alive-timeout-s", type=float, help="idle keep-alive connections (s)")
    p.add_argument(
        "--ws-send-timeout-s",
        type=float,
        help="a WebSocket client that takes no message this long is cut off (s)",
    )
    p.add_argument(
        "--ws-idle-timeout-s", type=optional_seconds, help="close silent WebSockets (s, or none)"
    )
    p.add_argument(
        "--ws-ping-interval-s", type=optional_seconds, help="WebSocket keepalive pings (s, or none)"
    )
    p.add_argument(
        "--ws-ping-timeout-s", type=optional_seconds, help="unanswered ping closes (s, or none)"
    )
    p.add_argument("--retry-after-s", type=int, help="Retry-After of 503 answers (s)")
    p.add_argument("--log-level", help="critical, error, warning, info, debug or trace")
    p.add_argument(
        "--mqtt-url", help="MQTT broker, mqtt://host:port or mqtts://host:port (default: no MQTT)"
    )
    p.add_argument("--mqtt-shard", help="K/N: apply only this replica's share of the streams")
    p.add_argument("--mqtt-client-id", help="MQTT client id (stable, unique per replica)")
    return p


# "none" given on the command line: the option's None (off), not "not given".
_NONE = "none"


def optional_seconds(text: str) -> float | str:
    """A number of seconds, or ``none`` (off)."""
    if text.strip().lower() in ("none", "off"):
        return _NONE
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds or 'none'; got {text!r}") from None


def settings_from_args(args: argparse.Namespace) -> Any:
    from service.settings import Settings

    overrides = {k: v for k, v in vars(args).items() if v is not None}
    overrides = {k: None if v is _NONE else v for k, v in overrides.items()}
    return Settings(**overrides)


def _validation_message(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        if err.get("type") == "default_factory_not_called":
            continue  # a consequence of another error above, not a problem of its own
        where = ".".join(str(p) for p in err.get("loc", ())) or "settings"
        msg = str(err.get("msg", "")).removeprefix("Value error, ")
        lines.append(f"  {where}: {msg}")
    return "invalid settings:\n" + "\n".join(lines)


def serve(argv: list[str]) -> int:
    args = serve_parser().parse_args(argv)
    try:
        settings = settings_from_args(args)
        settings.check_bind_is_safe()
    except ValidationError as exc:
        print(f"{PROG} serve: {_validation_message(exc)}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"{PROG} serve: {exc}", file=sys.stderr)
        return 2
    if settings.workers == 1:
        from service.app import create_app

        try:
            app = create_app(settings)
        except (ValueError, OSError) as exc:
            print(f"{PROG} serve: cannot load the model(s): {exc}", file=sys.stderr)
            return 2
        run_server(settings, app)
        return 0
    problem = _check_model_paths(settings.models)  # the workers load them; fail here plainly
    if problem:
        print(f"{PROG} serve: cannot load the model(s): {problem}", file=sys.stderr)
        return 2
    run_server(settings)
    return 0


def _check_model_paths(paths: Sequence[Any]) -> str | None:
    from service.settings import DEMO_MODEL_DIR

    for path in paths or [DEMO_MODEL_DIR]:
        if not (Path(path) / "config.json").is_file():
            return f"{path} is not a model artifact directory (no config.json)"
    return None


def run_server(settings: Any, app: Any = None) -> None:
    """Run uvicorn: ``app`` in this process, or (several workers) the app factory in each
    worker process, sharing the socket and the metrics."""
    import uvicorn

    from service.api.redaction import server_log_config
    from service.api.timeouts import HTTP_PROTOCOL, WS_PROTOCOL, ServerConfig
    from service.settings import SETTINGS_ENV
    from service.threads import apply_torch_threads

    apply_torch_threads(settings.torch_threads)
    os.environ[SETTINGS_ENV] = settings.model_dump_json()
    config = ServerConfig(
        app if app is not None else "service.app:app_from_env",
        factory=app is None,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level,
        log_config=server_log_config(settings.api_keys),
        lifespan="on",
        http=HTTP_PROTOCOL,
        ws=WS_PROTOCOL,
        ws_max_size=settings.max_body_bytes,
        ws_ping_interval=settings.ws_ping_interval_s,
        ws_per_message_deflate=settings.ws_compression,
        ws_ping_timeout=settings.ws_ping_timeout_s,
        timeout_keep_alive=settings.keep_alive_timeout_s,
        timeout_graceful_shutdown=10,
        header_timeout_s=settings.header_timeout_s,
        ws_send_timeout_s=settings.ws_send_timeout_s,
    )
    if settings.workers == 1:
        if app is not None:  # built here: freeze it (the factory, app_from_env, does its own)
            from service.gc_tuning import tune_gc_for_serving

            tune_gc_for_serving()
        uvicorn.Server(config).run()
        return
    # prometheus-client's multiprocess mode: every worker writes its series to files here and
    # /metrics merges them. Set before the workers are spawned (they read it at import).
    metrics_dir = tempfile.mkdtemp(prefix="liquid-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    try:
        supervisor = _supervisor_class()(config, sockets=[config.bind_socket()])
        supervisor.run()
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _supervisor_class() -> type[Any]:
    from prometheus_client import multiprocess
    from uvicorn.supervisors.multiprocess import Multiprocess

    class MetricsAwareMultiprocess(Multiprocess):
        """uvicorn's supervisor, marking workers that died or were replaced as dead for
        prometheus-client (so their live gauges drop out of /metrics)."""

        def _mark_gone(self, before: set[int | None]) -> None:
            now = {p.pid for p in self.processes}
            for pid in before - now:
                if pid is not None:
                    multiprocess.mark_process_dead(pid)

        def keep_subprocess_alive(self) -> None:
            before = {p.pid for p in self.processes}
            super().keep_subprocess_alive()
            self._mark_gone(before)

        def restart_all(self) -> None:
            before = {p.pid for p in self.processes}
            super().restart_all()
            self._mark_gone(before)

        def run(self) -> None:
            try:
                super().run()
            finally:
                for p in self.processes:
                    if p.pid is not None:
                        multiprocess.mark_process_dead(p.pid)

    return MetricsAwareMultiprocess


# -- commands from other packages -------------------------------------------------------------
def _delegate(module: str, command: str, extra: str) -> Command:
    def run(argv: list[str]) -> int:
        try:
            target = importlib.import_module(module)
        except ImportError as exc:
            print(
                f"{PROG} {command}: not available ({exc}). Install the training extras: "
                f"pip install 'liquidstream[{extra}]'",
                file=sys.stderr,
            )
            return 2
        return int(target.main([command, *argv]) or 0)

    return run


COMMANDS: dict[str, tuple[Command, str]] = {
    "serve": (serve, "serve models over HTTP and WebSocket"),
    "train": (_delegate("liquidcore.train.cli", "train", "train"), "train a model"),
    "evaluate": (_delegate("liquidcore.train.cli", "evaluate", "train"), "evaluate a model"),
    "demo": (
        lambda argv: int(importlib.import_module("service.demo.replay").main(argv)),
        "replay irregular sensor recordings into a running service",
    ),
}


def _usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = [f"usage: {PROG} <command> [options]", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", f"'{PROG} <command> --help' shows a command's options."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``liquid``; returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"{PROG}: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    command, _ = COMMANDS[name]
    try:
        return command(rest)
    except SystemExit as exc:  # argparse --help / usage errors
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
