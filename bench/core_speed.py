"""Core speed: liquidcore against ncps 1.0.1 on the same weights, in the same run.

Measures (a) one inference step for B streams of CfC(16 inputs, 64 units) and
LTC(16 inputs, AutoNCP(64, 8)) and (b) forward+backward of a B=64, T=100 sequence with
irregular per-sample Δt. ncps runs its cell with Δt shaped (B, 1), the only way it steps
per-sample Δt correctly (its sequence wrapper squeezes Δt and mis-broadcasts it).

ncps's time swings with glibc's malloc settings, so every measurement runs in two child
processes: one with the default allocator settings and one with ``MALLOC_MMAP_THRESHOLD_`` and
``MALLOC_TRIM_THRESHOLD_`` set high; the table compares us against the better of ncps's two.

Trustworthy ratios: within a child, ours and ncps are *interleaved* per repetition (ours, ncps,
ncps, ours, ...), so a load change on a shared machine hits both; each repetition times enough
calls to last about ``--rep-ms`` and records ms per call. Threads are pinned: the children run
with ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` set and call ``torch.set_num_threads(threads)``
and ``torch.set_num_interop_threads(1)``. Each row reports the median and [min, max] over
``--repeats`` (>= 7) repetitions (cyclic GC off inside each, as ``timeit``); a speed-up counts
as a *result* only when the spreads do not overlap (our max below ncps's min); otherwise the
row says ``overlap``.

On a shared machine, wall time measures the neighbours as much as the code. ``--clock cpu``
times each repetition by the process's CPU time (``time.process_time``: what this process ran,
not what it waited for the cores) and ``--cpus 0`` pins the children to the listed cores
(``os.sched_setaffinity``, as ``taskset -c 0``). With ``--threads 1`` the two together measure
the work each library does per call, which load on the other cores barely moves.

    python bench/core_speed.py                 # the table in BENCHMARKS.md
    python bench/core_speed.py --json out.json --batches 1 256 4096 --device cpu
    python bench/core_speed.py --models cfc --batches 1 64 4096 --threads 1 --cpus 0 --clock cpu
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from typing import Any

MALLOC_HIGH = {"MALLOC_MMAP_THRESHOLD_": str(2**30), "MALLOC_TRIM_THRESHOLD_": str(2**31)}


Spread = dict[str, float]  # {"median", "min", "max"} in ms per call


CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}


def _calls_per_rep(
    fn: Callable[[], object], sync: Callable[[], None], rep_ms: float, clock: Callable[[], float]
) -> int:
    start = clock()
    fn()
    sync()
    once = max(clock() - start, 1e-7)
    return max(1, int(rep_ms / 1e3 / once))


def interleaved_ms(
    fns: dict[str, Callable[[], object]],
    *,
    warmup: int,
    repeats: int,
    sync: Callable[[], None],
    rep_ms: float,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, Spread]:
    """Time every function in turn within each repetition (order reversed every other one)."""
    names = list(fns)
    for name in names:
        for _ in range(warmup):
            fns[name]()
    sync()
    calls = {name: _calls_per_rep(fns[name], sync, rep_ms, clock) for name in names}
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            fn, n = fns[name], calls[name]
            # As timeit: no cyclic GC inside a timed repetition (autograd graphs make garbage;
            # a collection landing in one repetition tripled it), collected between them.
            gc.collect()
            gc.disable()
            try:
                start = clock()
                for _ in range(n):
                    fn()
                sync()
                times[name].append((clock() - start) / n * 1e3)
            finally:
                gc.enable()
    return {
        name: {"median": statistics.median(t), "min": min(t), "max": max(t)}
        for name, t in times.items()
    }


def build_pair(kind: str, inputs: int, seed: int) -> tuple[Any, Any]:
    """An ncps module and our model carrying the same weights."""
    import torch
    from ncps.torch import LTC, CfC
    from ncps.wirings import AutoNCP

    from liquidcore.compat.ncps import from_ncps

    torch.manual_seed(seed)
    ref = CfC(inputs, 64) if kind == "cfc" else LTC(inputs, AutoNCP(64, 8))
    ours = from_ncps(ref)
    return ref.eval(), ours.eval()


def step_results(kind: str, ref: Any, ours: Any, args: argparse.Namespace) -> list[dict[str, Any]]:
    """One inference step for each batch size: ncps's cell with Δt (B, 1) against ours."""
    import torch

    device = torch.device(args.device)
    sync = sync_fn(device)
    cell = ref.rnn_cell
    rows = []
    for B in args.batches:
        g = torch.Generator().manual_seed(B)
        x = torch.randn(B, 16, generator=g).to(device)
        dt = (torch.rand(B, generator=g) * 2 + 0.1).to(device)
        h = ours.init_state(B, device=device)
        timing = {
            "warmup": args.warmup,
            "repeats": args.repeats,
            "sync": sync,
            "clock": CLOCKS[args.clock],
        }
        with torch.inference_mode():
            err = float((cell(x, h, dt.unsqueeze(1))[0] - ours.step(x, dt, h)[0]).abs().max())
            fns: dict[str, Callable[[], object]] = {"ours": partial(ours.step, x, dt, h)}
            if not args.skip_ncps:
                fns["ncps"] = partial(cell, x, h, dt.unsqueeze(1))
            spreads = interleaved_ms(fns, rep_ms=args.rep_ms, **timing)
        rows.append(
            {
                "model": kind,
                "B": B,
                "ncps": spreads.get("ncps", NAN_SPREAD),
                "ours": spreads["ours"],
                "max_abs_diff": err,
            }
        )
    return rows


def ncps_fwd_bwd(ref: Any, x: Any, dt: Any) -> None:
    import torch

    cell = ref.rnn_cell
    h = torch.zeros(x.shape[0], ref.state_size, device=x.device)
    outs = []
    for t in range(x.shape[1]):
        out, h = cell(x[:, t], h, dt[:, t : t + 1])
        outs.append(out)
    ref.zero_grad(set_to_none=True)
    torch.stack(outs, 1).square().mean().backward()


def ours_fwd_bwd(ours: Any, x: Any, dt: Any) -> None:
    y, _ = ours(x, dt)
    ours.zero_grad(set_to_none=True)
    y.square().mean().backward()


def train_result(kind: str, ref: Any, ours: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Forward + backward of a B=64, T=100 sequence with irregular per-sample Δt."""
    import torch

    device = torch.device(args.device)
    B, T = 64, 100
    g = torch.Generator().manual_seed(7)
    x = torch.randn(B, T, 16, generator=g).to(device)
    dt = (torch.rand(B, T, generator=g) * 2 + 0.1).to(device)
    ref.train()
    ours.train()
    timing = {
        "warmup": 3,
        "repeats": args.train_repeats,
        "sync": sync_fn(device),
        "clock": CLOCKS[args.clock],
    }
    fns: dict[str, Callable[[], object]] = {"ours": partial(ours_fwd_bwd, ours, x, dt)}
    if not args.skip_ncps:
        fns["ncps"] = partial(ncps_fwd_bwd, ref, x, dt)
    spreads = interleaved_ms(fns, rep_ms=0.0, **timing)  # one call per repetition
    return {
        "model": kind,
        "B": B,
        "T": T,
        "ncps": spreads.get("ncps", NAN_SPREAD),
        "ours": spreads["ours"],
    }


def sync_fn(device: Any) -> Callable[[], None]:
    import torch

    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


def worker(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from liquidcore.native import library

    if args.cpus:
        os.sched_setaffinity(0, args.cpus)
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    results: dict[str, Any] = {
        "threads": torch.get_num_threads(),
        "cpus": sorted(os.sched_getaffinity(0)),
        "native_ltc": library() is not None,
        "step": [],
        "train": [],
    }
    for kind in args.models:
        ref, ours = build_pair(kind, 16, args.seed)
        ref, ours = ref.to(args.device), ours.to(args.device)
        results["step"] += step_results(kind, ref, ours, args)
        if args.train:
            results["train"].append(train_result(kind, ref, ours, args))
    return results


def run_child(argv: list[str], extra_env: dict[str, str], threads: int) -> dict[str, Any]:
    pinned = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    env = {**os.environ, **pinned, **extra_env}
    out = subprocess.run(
        [sys.executable, __file__, "--worker", *argv],
        env=env,
        check=False,
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise SystemExit(f"benchmark worker failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


NAN_SPREAD: Spread = {"median": float("nan"), "min": float("nan"), "max": float("nan")}


def fmt(v: float) -> str:
    return "—" if v != v else (f"{v:.3f}" if v < 1 else f"{v:.1f}" if v < 100 else f"{v:.0f}")


def spread(s: Spread) -> str:
    return (
        "—"
        if s["median"] != s["median"]
        else f"{fmt(s['median'])} [{fmt(s['min'])}, {fmt(s['max'])}]"
    )


def verdict(ref: Spread, ours: Spread) -> str:
    """The median ratio, marked as a result only when the spreads do not overlap."""
    if ref["median"] != ref["median"]:
        return "—"
    r = ref["median"] / ours["median"]
    if ours["max"] < ref["min"]:
        return f"**{r:.2f}×**"
    if ref["max"] < ours["min"]:
        return f"**{r:.2f}×** (slower)"
    return f"{r:.2f}× (overlap)"


def better(a: Spread, b: Spread) -> Spread:
    return a if a["median"] <= b["median"] or b["median"] != b["median"] else b


def table(default: dict[str, Any], high: dict[str, Any]) -> str:
    lines = [
        "| model | B | ncps ms, median [min, max] | liquidcore ms, median [min, max] "
        "| speed-up (bold: spreads apart) | max abs diff |",
        "|---|---|---|---|---|---|",
    ]
    for a, b in zip(default["step"], high["step"], strict=True):
        ref, ours = better(a["ncps"], b["ncps"]), better(a["ours"], b["ours"])
        diff = max(a["max_abs_diff"], b["max_abs_diff"])
        lines.append(
            f"| {a['model'].upper()} step | {a['B']} | {spread(ref)} | {spread(ours)} "
            f"| {verdict(ref, ours)} | {diff:.1e} |"
        )
    for a, b in zip(default["train"], high["train"], strict=True):
        ref, ours = better(a["ncps"], b["ncps"]), better(a["ours"], b["ours"])
        lines.append(
            f"| {a['model'].upper()} fwd+bwd | {a['B']}×T{a['T']} | {spread(ref)} "
            f"| {spread(ours)} | {verdict(ref, ours)} | — |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--models", nargs="+", default=["cfc", "ltc"], choices=["cfc", "ltc"])
    p.add_argument("--batches", nargs="+", type=int, default=[1, 64, 256, 1024, 4096])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--cpus", nargs="+", type=int, help="pin the children to these cores")
    p.add_argument(
        "--clock", choices=sorted(CLOCKS), default="wall", help="wall or process CPU time"
    )
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--repeats", type=int, default=9, help="interleaved repetitions (>= 7)")
    p.add_argument("--rep-ms", type=float, default=20.0, help="target length of a repetition")
    p.add_argument("--train-repeats", type=int, default=7)
    p.add_argument("--no-train", dest="train", action="store_false")
    p.add_argument(
        "--skip-ncps", action="store_true", help="time liquidcore only (large B on a GPU)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="also write raw results to this file")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if min(args.repeats, args.train_repeats) < 7:
        p.error("--repeats and --train-repeats must be >= 7 (a spread needs repetitions)")
    if args.worker:
        print(json.dumps(worker(args)))
        return
    argv = [a for a in sys.argv[1:] if not a.startswith("--json")]
    if args.json:
        argv = [a for a in argv if a != args.json]
    default = run_child(argv, {}, args.threads)
    high = run_child(argv, MALLOC_HIGH, args.threads)
    native = "on" if default["native_ltc"] else "off"
    print(
        f"threads={default['threads']} cpus={default['cpus']} clock={args.clock} "
        f"device={args.device} native LTC kernels={native}"
    )
    print(
        f"{args.clock} ms per call, median [min, max] of interleaved repetitions "
        f"({args.repeats} step, {args.train_repeats} fwd+bwd)\n"
    )
    print(table(default, high))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"default_malloc": default, "high_malloc": high}, f, indent=2)


if __name__ == "__main__":
    main()
