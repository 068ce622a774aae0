"""PNG plots with matplotlib's Agg canvas (no pyplot, no global backend, no display)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def _figure(width: float = 7.0, height: float = 4.2) -> Any:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ValueError("plots need matplotlib: pip install 'liquidstream[train]'") from exc
    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def _integer_epochs(ax: Any) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def plot_loss_curves(
    history: Sequence[Mapping[str, Any]],
    path: str | Path,
    *,
    title: str = "training",
    best_epoch: int | None = None,
) -> Path:
    """Train and validation loss per epoch (log scale when all positive)."""
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    epochs = [int(h["epoch"]) for h in history]
    for key, label in (("train_loss", "train"), ("valid_loss", "validation")):
        vals = [float(h.get(key, math.nan)) for h in history]
        ax.plot(epochs, vals, marker="o", markersize=3, label=label)
    if best_epoch is not None:
        ax.axvline(best_epoch, color="grey", linestyle="--", linewidth=1, label="best")
    values = [float(h.get(k, math.nan)) for h in history for k in ("train_loss", "valid_loss")]
    finite = [v for v in values if math.isfinite(v)]
    if finite and min(finite) > 0 and max(finite) > 10 * min(finite):
        ax.set_yscale("log")
    _integer_epochs(ax)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out


def plot_curves_by_model(
    curves: Mapping[str, Sequence[Sequence[float]]],
    path: str | Path,
    *,
    ylabel: str,
    title: str,
) -> Path:
    """Mean (line) and min-max band over seeds of one per-epoch series, per model."""
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    positive = True
    span: list[float] = []
    for name, runs in curves.items():
        runs = [r for r in runs if len(r)]
        if not runs:
            continue
        n = max(len(r) for r in runs)
        cols = [[r[i] for r in runs if i < len(r) and math.isfinite(r[i])] for i in range(n)]
        xs = [i + 1 for i, c in enumerate(cols) if c]
        mean = [sum(c) / len(c) for c in cols if c]
        lo = [min(c) for c in cols if c]
        hi = [max(c) for c in cols if c]
        positive = positive and all(v > 0 for v in lo)
        span += lo + hi
        (line,) = ax.plot(xs, mean, label=name)
        ax.fill_between(xs, lo, hi, alpha=0.15, color=line.get_color())
    if positive and span and max(span) > 10 * min(span):
        ax.set_yscale("log")
    _integer_epochs(ax)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out


def plot_bars(
    values: Mapping[str, tuple[float, float]],
    path: str | Path,
    *,
    ylabel: str,
    title: str,
    reference: Mapping[str, float] | None = None,
) -> Path:
    """One bar per model: mean with a ± sd error bar; ``reference`` values (e.g. a paper's
    numbers for the same models) are drawn as markers over their bars."""
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    names = list(values)
    means = [values[n][0] for n in names]
    sds = [values[n][1] if math.isfinite(values[n][1]) else 0.0 for n in names]
    ax.bar(range(len(names)), means, yerr=sds, capsize=4, color="#4c72b0", label="measured")
    marked = [(i, reference[n]) for i, n in enumerate(names) if reference and n in reference]
    if marked:
        xs, ys = zip(*marked, strict=True)
        ax.scatter(xs, ys, marker="D", color="#dd8452", zorder=3, label="published")
        ax.legend()
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=30, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out
