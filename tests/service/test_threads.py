"""Threads and worker processes sized from the core count (``service.settings``) and applied
to torch (``service.threads``)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from service.settings import Settings, available_cores, default_torch_threads, default_workers
from tests.service_process import REPO, clean_env


def test_default_workers_follow_the_store_and_cores() -> None:
    assert default_workers(None, cores=16) == 1  # the in-process store lives in one process
    assert default_workers("redis://h:6379/0", cores=1) == 1
    assert default_workers("redis://h:6379/0", cores=2) == 1
    assert default_workers("redis://h:6379/0", cores=16) == 8


def test_default_torch_threads_leave_a_core_for_the_event_loop() -> None:
    assert default_torch_threads(1, cores=1) == 1
    assert default_torch_threads(1, cores=2) == 1
    assert default_torch_threads(1, cores=3) == 2
    assert default_torch_threads(1, cores=64) == 4
    assert default_torch_threads(8, cores=16) == 1


def test_settings_resolve_and_override(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("LIQUID_"):
            monkeypatch.delenv(key)
    cores = available_cores()
    s = Settings()
    assert (s.workers, s.torch_threads) == (1, default_torch_threads(1, cores))
    r = Settings(redis_url="redis://127.0.0.1:6379/0")
    assert r.workers == max(1, cores // 2)
    assert r.torch_threads == default_torch_threads(r.workers, cores)
    assert Settings(torch_threads=3).torch_threads == 3
    monkeypatch.setenv("LIQUID_TORCH_THREADS", "2")
    assert Settings().torch_threads == 2
    with pytest.raises(ValueError, match="torch_threads must be >= 1"):
        Settings(torch_threads=0)


def test_apply_torch_threads_sets_torch_and_child_processes() -> None:
    code = (
        "import torch, subprocess, sys\n"
        "from service.threads import apply_torch_threads\n"
        "apply_torch_threads(1)\n"
        "child = subprocess.run([sys.executable, '-c', 'import torch; "
        "print(torch.get_num_threads())'], capture_output=True, text=True, check=True)\n"
        "print(torch.get_num_threads(), child.stdout.strip())\n"
    )
    env = clean_env()
    env.pop("OMP_NUM_THREADS", None)
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["1", "1"]
