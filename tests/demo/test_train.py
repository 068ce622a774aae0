"""The script that trains the demo model, in a smoke run (one epoch, a few batches)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from liquidcore.checkpoint import load_model
from service.demo import recordings as rec
from service.demo.train import CARD_FILE, Options, main, train
from tests.demo.conftest import REPO, clean_env, has_sktime_data

pytestmark = pytest.mark.skipif(
    not has_sktime_data(), reason="the BasicMotions files come with sktime"
)

SMOKE = ["--epochs", "1", "--draws", "1", "--max-batches", "2"]


@pytest.mark.slow
def test_smoke_run_writes_a_servable_artifact_and_its_card(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "service.demo.train", *SMOKE, "--out", str(out)],
        cwd=REPO,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    model = load_model(out)
    assert model.name == "demo"
    assert model.feature_names == list(rec.FEATURES)
    printed = proc.stdout
    assert f"model demo version {model.version}" in printed
    assert "test last-event accuracy" in printed
    assert "test all-event accuracy" in printed
    card = (out / CARD_FILE).read_text()
    # the card quotes the lines the script printed, and the command that reproduces them
    for line in printed.splitlines()[-5:]:
        assert line in card
    assert "python -m service.demo.train --epochs 1 --draws 1 --max-batches 2" in card


def test_training_is_deterministic(tmp_path: Path) -> None:
    opts = {"epochs": 1, "draws": 1, "max_batches": 2}
    a = train(Options(out=tmp_path / "a", **opts), log=lambda _line: None)  # type: ignore[arg-type]
    b = train(Options(out=tmp_path / "b", **opts), log=lambda _line: None)  # type: ignore[arg-type]
    assert a.version == b.version
    assert (tmp_path / "a" / "weights.safetensors").read_bytes() == (
        tmp_path / "b" / "weights.safetensors"
    ).read_bytes()


def test_bad_options_fail_plainly(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["--draws", "0", "--out", str(tmp_path / "x")]) == 1
    assert "draws must be >= 1" in capsys.readouterr().err
