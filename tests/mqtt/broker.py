"""A private mosquitto that one test module owns: on a free port of 127.0.0.1 (never the
machine's 1883), with a temporary config and persistence on, so that a restart keeps the
sessions and the queued messages (as a production broker does)."""

from __future__ import annotations

import contextlib
import getpass
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port, stop_process, wait_for_port

MOSQUITTO = "/usr/sbin/mosquitto"


def mosquitto_exe() -> str:
    exe = shutil.which("mosquitto") or (MOSQUITTO if Path(MOSQUITTO).exists() else None)
    if exe is None:
        pytest.fail("mosquitto is not installed; `make install-system` installs it")
    return exe


class Mosquitto:
    def __init__(self, workdir: Path, *extra_config: str) -> None:
        self.exe = mosquitto_exe()
        self.workdir = workdir
        self.port = free_port()
        self.config = workdir / "mosquitto.conf"
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "set_tcp_nodelay true\n"  # as deploy/mosquitto/mosquitto.conf
            # started as root, mosquitto would switch to the 'mosquitto' user, which cannot
            # write its persistence file into this directory
            f"user {getpass.getuser()}\n"
            "persistence true\n"
            f"persistence_location {workdir}/\n"
            # a session's queue is bounded by the session, not by a small broker default
            "max_queued_messages 100000\n"
            "log_dest stderr\n"
            "log_type error\n"
            "log_type warning\n" + "".join(f"{line}\n" for line in extra_config)
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = open(self.workdir / "mosquitto.log", "ab")  # noqa: SIM115 (the process owns it)
        self.proc = subprocess.Popen(
            [self.exe, "-c", str(self.config)], stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        wait_for_port(self.port)

    def stop(self) -> None:
        """SIGTERM: mosquitto writes its persistence file and exits."""
        if self.proc is None:
            return
        stop_process(self.proc, timeout=10)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


@contextlib.contextmanager
def private_mosquitto(workdir: Path) -> Iterator[Mosquitto]:
    broker = Mosquitto(workdir)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
