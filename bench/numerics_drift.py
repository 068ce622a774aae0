"""How far a stream's state drifts when it is stepped inside different batch compositions.

The numerics contract (docs/numerics.md) promises a stated tolerance, not bit-exactness, for the
same events replayed through different batches: PyTorch's CPU kernels (MKL/oneDNN GEMMs,
vectorised element-wise loops with scalar tails) pick their blocking by shape, so a row computed
inside a batch of 64 need not be bit-identical to the same row computed alone. This script
measures the drift that causes over a long replay.

Every stream is stepped ``--steps`` times on irregular events (Δt drawn from 0, 1 ms … 47 s,
so equal timestamps occur). The reference steps each stream alone (batch 1, ``model.step``);
the compositions are: fixed batches of 7, all streams in one batch, a fresh random partition
into batches of random size at every step ("shuffled"), and the engine's sequence path
(``model.forward`` over chunks of 16 events with padding, as a batch of several events per
stream is served). Reported: the largest absolute difference of states from the reference
over all streams and all steps up to each checkpoint, and of presented outputs over the whole run.

    .venv/bin/python bench/numerics_drift.py --steps 10000
    ATEN_CPU_CAPABILITY=avx2 .venv/bin/python bench/numerics_drift.py --steps 10000
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from liquidcore.cells.cfc import CfCCell
from liquidcore.cells.ltc import LTCCell
from liquidcore.checkpoint import load_model
from liquidcore.heads import ReadoutHead
from liquidcore.model import LiquidModel
from liquidcore.wirings import AutoNCP

DEMO = Path(__file__).resolve().parents[1] / "service" / "demo_model"
DT_CHOICES = np.array([0.0, 1e-3, 0.013, 0.1, 0.5, 3.0, 47.0])


def _model(cell: torch.nn.Module, inputs: int, name: str) -> LiquidModel:
    head = ReadoutHead(cell.output_size, 4, kind="classification")  # type: ignore[attr-defined]
    return LiquidModel(cell, head, time_unit=1.0, name=name).eval()  # type: ignore[arg-type]


def models() -> dict[str, Callable[[], LiquidModel]]:
    """The models measured: the shipped demo, the size the service benchmark serves, an LTC."""

    def cfc64() -> LiquidModel:
        torch.manual_seed(0)
        return _model(CfCCell(8, 64, backbone_units=128, backbone_layers=1), 8, "cfc64")

    def ltc_ncp() -> LiquidModel:
        torch.manual_seed(0)
        return _model(LTCCell(AutoNCP(32, 4, seed=1), in_features=8), 8, "ltc_ncp32")

    return {"demo_cfc16": lambda: load_model(DEMO).eval(), "cfc64": cfc64, "ltc_ncp32": ltc_ncp}


def batches(n: int, how: str, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Index sets covering ``range(n)``: how the streams share batches at one step."""
    if how == "alone":
        yield from (np.array([i]) for i in range(n))
    elif how == "batch7":
        yield from (np.arange(i, min(i + 7, n)) for i in range(0, n, 7))
    elif how == "all":
        yield np.arange(n)
    elif how == "shuffled":
        order = rng.permutation(n)
        i = 0
        while i < n:
            size = int(rng.integers(1, n + 1))
            yield order[i : i + size]
            i += size
    else:
        raise ValueError(how)


def replay_steps(model: LiquidModel, x: torch.Tensor, dt: torch.Tensor, how: str, seed: int):
    """States and presented outputs after each step, ``[T, N, S]`` and ``[T, N, O]``."""
    N, T = x.shape[0], x.shape[1]
    rng = np.random.default_rng(seed)
    h = model.init_state(N)
    hs = torch.empty(T, N, model.state_size)
    ys = torch.empty(T, N, model.output_size)
    with torch.inference_mode():
        for t in range(T):
            new_h = torch.empty_like(h)
            for idx_np in batches(N, how, rng):
                idx = torch.from_numpy(idx_np)
                y, h_b = model.step(x[idx, t], dt[idx, t], h[idx])
                new_h[idx] = h_b
                ys[t, idx] = model.present(y)
            h = new_h
            hs[t] = h
    return hs, ys


def replay_sequence(model: LiquidModel, x: torch.Tensor, dt: torch.Tensor, chunk: int = 16):
    """The engine's path: ``model.forward`` over chunks of ``chunk`` events per stream; states
    ``[T // chunk, N, S]`` at chunk ends, outputs ``[T, N, O]``."""
    N, T = x.shape[0], x.shape[1]
    h = model.init_state(N)
    hs, ys = [], []
    with torch.inference_mode():
        for t0 in range(0, T, chunk):
            y, h = model.forward(x[:, t0 : t0 + chunk], dt[:, t0 : t0 + chunk], h0=h)
            ys.append(model.present(y).transpose(0, 1))
            hs.append(h)  # the state at each chunk's end, as the engine stores it
    return torch.stack(hs), torch.cat(ys)


def checkpoints(T: int) -> list[int]:
    marks = [1, 10, 100, 1000, 10000, 100000]
    return [m for m in marks if m <= T] + ([T] if T not in marks else [])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--steps", type=int, default=10000)
    p.add_argument("--streams", type=int, default=32)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--models", nargs="*", default=None, help="subset of " + ", ".join(models()))
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(7)
    rng = np.random.default_rng(7)
    report: dict[str, object] = {
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "machine": platform.processor() or platform.machine(),
        "threads": args.threads,
        "steps": args.steps,
        "streams": args.streams,
        "results": {},
    }
    print(
        f"# torch {torch.__version__}, CPU capability {report['cpu_capability']}, "
        f"{args.threads} thread(s), {args.streams} streams x {args.steps} steps"
    )
    results: dict[str, dict[str, dict[str, float]]] = {}
    for name, make in models().items():
        if args.models and name not in args.models:
            continue
        model = make()
        N, T = args.streams, args.steps
        x = torch.randn(N, T, model.input_size, generator=gen) * 2.0
        dt = torch.from_numpy(rng.choice(DT_CHOICES, size=(N, T)).astype(np.float32))
        t0 = time.perf_counter()
        ref_h, ref_y = replay_steps(model, x, dt, "alone", 0)
        scale = float(ref_h.abs().max())
        print(f"\n## {name}: state size {model.state_size}, max |h| {scale:.3g}")
        print(
            "| composition | " + " | ".join(f"step {c}" for c in checkpoints(T)) + " | max |Δy| |"
        )
        print("|---|" + "---|" * (len(checkpoints(T)) + 1))
        results[name] = {}
        for how in ("batch7", "all", "shuffled"):
            hs, ys = replay_steps(model, x, dt, how, 1)
            dh = (hs - ref_h).abs().amax(dim=(1, 2)).cummax(dim=0).values
            cells = [float(dh[c - 1]) for c in checkpoints(T)]
            dy = float((ys - ref_y).abs().max())
            results[name][how] = {"max_dh": float(dh.max()), "max_dy": dy}
            print(f"| {how} | " + " | ".join(f"{v:.2e}" for v in cells) + f" | {dy:.2e} |")
        hs, ys = replay_sequence(model, x, dt)
        ends = torch.arange(15, T, 16)
        dh = (hs[: len(ends)] - ref_h[ends]).abs().amax(dim=(1, 2)).cummax(dim=0).values
        dy = float((ys - ref_y).abs().max())
        results[name]["sequence16"] = {"max_dh": float(dh.max()), "max_dy": dy}
        cells = [float(dh[min(len(dh), max(1, c // 16)) - 1]) for c in checkpoints(T)]
        print("| sequence16 | " + " | ".join(f"{v:.2e}" for v in cells) + f" | {dy:.2e} |")
        print(f"({time.perf_counter() - t0:.0f} s)")
    report["results"] = results
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
