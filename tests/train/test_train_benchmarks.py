"""bench/train_benchmarks.py at smoke scale: results, summary and plots; finished pairs are
skipped and more epochs extend a finished pair."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import train_benchmarks as tb

SMOKE = ["xor", "--xor-train-size", "48", "--batch-size", "16", "--threads", "1", "--no-progress"]


def test_smoke_run_writes_results_and_skips_finished_pairs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bench"
    args = [*SMOKE, "--models", "cfc,gru_dt", "--seeds", "2", "--epochs", "1", "--out", str(out)]
    assert tb.main(args) == 0
    first = capsys.readouterr().out
    for model in ("cfc", "gru_dt"):
        for seed in (0, 1):
            r = json.loads((out / model / f"seed{seed}" / "result.json").read_text())
            assert r["epochs_done"] == 1
            assert 0.0 <= r["test_metrics"]["accuracy"] <= 1.0
            assert r["parameters"] > 0
            assert r["parameters_in_use"] == r["parameters"]  # no wiring masks here
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["models"]) == {"cfc", "gru_dt"}
    assert summary["models"]["cfc"]["seeds"] == [0, 1]
    assert (out / "summary.md").read_text().startswith("| model |")
    assert (out / "test_accuracy.png").read_bytes().startswith(b"\x89PNG")
    assert (out / "valid_curves.png").is_file()
    assert "parameters" in first

    stored = out / "cfc" / "seed0" / "result.json"  # a result from before the in-use count
    older = json.loads(stored.read_text())
    del older["parameters_in_use"]
    stored.write_text(json.dumps(older))
    assert tb.main(args) == 0  # everything done: skipped
    assert capsys.readouterr().out.count("done before") == 4
    row = json.loads((out / "summary.json").read_text())["models"]["cfc"]
    assert row["parameters_in_use"] == row["parameters"]

    more = [*SMOKE, "--models", "gru_dt", "--seeds", "1", "--epochs", "2", "--out", str(out)]
    assert tb.main(more) == 0
    assert "resuming" in capsys.readouterr().out
    r = json.loads((out / "gru_dt" / "seed0" / "result.json").read_text())
    assert r["epochs_done"] == 2


def test_estimate_epoch_time(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = [*SMOKE, "--models", "lstm", "--estimate-epoch-time", "2", "--out", str(tmp_path)]
    assert tb.main(args) == 0
    timing = json.loads((tmp_path / "timing.json").read_text())["models"]["lstm"]
    assert timing["batches_per_epoch"] == 3
    assert timing["parameters_in_use"] == timing["parameters"] > 0
    assert timing["seconds_per_epoch"] == pytest.approx(3 * timing["seconds_per_batch"])
    assert "min/epoch" in capsys.readouterr().out


def test_unknown_model_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert tb.main([*SMOKE, "--models", "transformer"]) == 2
    assert "no preset" in capsys.readouterr().err


def test_schedule_and_decay_override_the_preset() -> None:
    args = tb.build_parser().parse_args(["xor", "--lr", "0.0005", "--decay", "0.98"])
    _, optim = tb.preset_for("xor", "cfc", args)
    assert (optim.lr, optim.decay, optim.schedule) == (0.0005, 0.98, "exponential")
    args = tb.build_parser().parse_args(["xor", "--schedule", "cosine"])
    _, optim = tb.preset_for("xor", "cfc", args)
    assert optim.schedule == "cosine"
    assert optim.decay == 0.95  # the preset's
    with pytest.raises(SystemExit):
        tb.build_parser().parse_args(["xor", "--schedule", "linear"])


def test_a_decay_outside_zero_one_is_refused() -> None:
    args = tb.build_parser().parse_args(["xor", "--decay", "1.5"])
    with pytest.raises(ValueError, match="decay must be in"):
        tb.preset_for("xor", "cfc", args)
