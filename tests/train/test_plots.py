"""Bar plots: published reference markers are drawn only for the models they name."""

from __future__ import annotations

from pathlib import Path

from liquidcore.train.plots import plot_bars

VALUES = {"cfc": (0.63, 0.01), "lstm": (1.3, 0.02)}


def _png(path: Path, reference: dict[str, float] | None) -> bytes:
    plot_bars(VALUES, path, ylabel="test mse", title="t", reference=reference)
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG")
    return data


def test_reference_markers_change_the_plot_only_for_named_models(tmp_path: Path) -> None:
    plain = _png(tmp_path / "plain.png", None)
    assert _png(tmp_path / "unrelated.png", {"gru_d": 1.09}) == plain
    assert _png(tmp_path / "marked.png", {"cfc": 0.643}) != plain
