"""The native fused LTC loop (liquidcore.native) against the torch implementation it replaces.

The torch path (``LIQUIDCORE_NATIVE=off``) is the reference. The contract: forward states agree
to 2e-6 absolute in float32 and 1e-13 in float64, every gradient to the same times its largest
magnitude plus one, on ragged batches (tiles of 16 streams with padding), Δt = 0 lanes (there
the state is bit-identical), units without incoming synapses, and through a whole LTC model
(1e-5). Those comparisons skip where no kernels can be built. Also the modes: the ``auto``
fallback when no compiler works (one log line, no Python warning, the PyTorch path exactly),
``require``'s error, the settings read once, ``warm()``, the cache, and the build without
OpenMP.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import Tensor

import liquidcore.native as lnative
from liquidcore.functional.ltc_fused import FusedSemiImplicit
from liquidcore.functional.ltc_synapses import SynapseIndex, synapse_index
from liquidcore.native import build
from liquidcore.native import ltc as native
from tests.model_factory import INPUTS, make_model
from tests.native_kernels import skip_without_native_kernels

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def kernels() -> None:
    """The test needs the native kernels (skipped where they cannot be built)."""
    skip_without_native_kernels()


def problem(
    H: int, S: int, B: int, T: int, dtype: torch.dtype, seed: int
) -> tuple[tuple[Tensor, ...], SynapseIndex]:
    """Random inputs of ``_FusedSemiImplicit`` with ragged features: Δt = 0 for stream 0 and at
    one step of every stream, and unit 0 without incoming synapses."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(S, H, generator=g) < 0.3
    mask[:, 0] = False
    mask[1, 1] = True
    src, dst = torch.nonzero(mask, as_tuple=True)
    idx = synapse_index(src, dst, S, H)
    E = src.numel()
    v0 = torch.randn(H, B, generator=g)
    drive = torch.cat(
        [torch.randn(T, H, B, generator=g), torch.rand(T, H, B, generator=g) + 0.2], 1
    )
    dt = torch.rand(T, 1, B, generator=g) * 3
    dt[:, :, 0] = 0.0
    dt[T // 2] = 0.0
    cu = (torch.rand(H, 1, generator=g) + 0.3) * 4
    pair_w = torch.randn(2 * E, generator=g) * 3
    reduce_w = torch.cat([torch.randn(E, generator=g), torch.rand(E, generator=g)])
    tensors = tuple(t.to(dtype) for t in (v0, drive, dt, cu, pair_w, reduce_w))
    return tensors, idx


def run(
    mode: str,
    tensors: tuple[Tensor, ...],
    idx: SynapseIndex,
    unfolds: int,
    monkeypatch: pytest.MonkeyPatch,
    reset: bool = True,
) -> tuple[Tensor, list[Tensor]]:
    monkeypatch.setenv("LIQUIDCORE_NATIVE", mode)
    if reset:
        lnative.reset()
    xs = [t.clone().requires_grad_() for t in tensors]
    out = FusedSemiImplicit.apply(*xs, idx, unfolds)
    assert isinstance(out, Tensor)
    weight = torch.randn(out.shape, generator=torch.Generator().manual_seed(99)).to(out.dtype)
    (out * weight).sum().backward()
    grads = [x.grad for x in xs]
    assert all(g is not None for g in grads)
    return out.detach(), [g for g in grads if g is not None]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("B", [1, 5, 16, 17, 64])
def test_native_matches_torch_path(
    dtype: torch.dtype, B: int, monkeypatch: pytest.MonkeyPatch, kernels: None
) -> None:
    tensors, idx = problem(H=19, S=19, B=B, T=6, dtype=dtype, seed=B)
    ref_out, ref_grads = run("off", tensors, idx, 3, monkeypatch)
    out, grads = run("require", tensors, idx, 3, monkeypatch)
    tol = 2e-6 if dtype == torch.float32 else 1e-13
    torch.testing.assert_close(out, ref_out, rtol=0, atol=tol)
    names = ["v0", "drive", "dt", "cu", "pair_w", "reduce_w"]
    for name, got, want in zip(names, grads, ref_grads, strict=True):
        scale = float(want.abs().max()) + 1.0
        torch.testing.assert_close(got, want, rtol=0, atol=tol * scale, msg=name)
    # Δt = 0 leaves the state exactly unchanged, on the native path too
    assert torch.equal(out[:, :, 0], tensors[0][:, 0].expand_as(out[:, :, 0]))
    assert torch.isfinite(torch.cat([g.reshape(-1) for g in grads])).all()


def test_native_independent_of_thread_count(monkeypatch: pytest.MonkeyPatch, kernels: None) -> None:
    """Streams are split over threads by whole tiles: outputs are bit-identical for any thread
    count; parameter gradients are summed per thread, so equal to round-off."""
    tensors, idx = problem(H=12, S=12, B=70, T=4, dtype=torch.float64, seed=3)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        out1, grads1 = run("require", tensors, idx, 2, monkeypatch)
        torch.set_num_threads(2)
        out2, grads2 = run("require", tensors, idx, 2, monkeypatch)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(out1, out2)
    for a, b in zip(grads1, grads2, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", ["ltc", "mixed_ltc"])
def test_ltc_model_native_equals_torch_path(
    kind: str, monkeypatch: pytest.MonkeyPatch, kernels: None
) -> None:
    """Whole LTC models (AutoNCP wirings): sequence outputs, final state and every parameter
    gradient agree between the two paths in float32, and the native path really runs."""
    model = make_model(kind, seed=2)
    calls: list[str] = []
    for name in ("forward", "backward"):
        original = getattr(native, name)

        def counted(*args: object, _name: str = name, _f: object = original) -> object:
            calls.append(_name)
            return _f(*args)  # type: ignore[operator]

        monkeypatch.setattr(native, name, counted)
    g = torch.Generator().manual_seed(4)
    x = torch.randn(9, 30, INPUTS, generator=g)
    dt = torch.rand(9, 30, generator=g) * 2
    dt[:, 5] = 0.0

    def fwd_bwd(mode: str) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        monkeypatch.setenv("LIQUIDCORE_NATIVE", mode)
        lnative.reset()
        model.zero_grad()
        y, h = model(x, dt)
        (y.square().mean() + h.square().mean()).backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        return y.detach(), h.detach(), grads

    y0, h0, g0 = fwd_bwd("off")
    assert not calls
    y1, h1, g1 = fwd_bwd("require")
    assert set(calls) == {"forward", "backward"}
    torch.testing.assert_close(y1, y0, rtol=0, atol=1e-5)
    torch.testing.assert_close(h1, h0, rtol=0, atol=1e-5)
    assert g0.keys() == g1.keys()
    assert g0
    for name in g0:
        scale = float(g0[name].abs().max()) + 1e-3
        torch.testing.assert_close(g1[name], g0[name], rtol=0, atol=1e-5 * scale, msg=name)


# --- modes, settings, build --------------------------------------------------------------------


def no_compiler(monkeypatch: pytest.MonkeyPatch, cache: Path, mode: str = "auto") -> None:
    """A machine without a working C compiler and with an empty kernel cache."""
    monkeypatch.setenv("LIQUIDCORE_NATIVE_CACHE", str(cache))
    monkeypatch.setenv("CC", "false")  # a "compiler" that always fails
    monkeypatch.setenv("LIQUIDCORE_NATIVE", mode)
    lnative.reset()


def test_auto_falls_back_with_one_log_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    no_compiler(monkeypatch, tmp_path)
    tensors, idx = problem(H=6, S=6, B=4, T=2, dtype=torch.float32, seed=5)
    with caplog.at_level(logging.INFO, logger="liquidcore.native"):
        out, _ = run("auto", tensors, idx, 2, monkeypatch, reset=False)
        run("auto", tensors, idx, 2, monkeypatch, reset=False)  # warned once, not per call
        status = lnative.status()
    records = [r for r in caplog.records if r.name == "liquidcore.native"]
    assert [r.levelno for r in records] == [logging.WARNING]
    assert "using the PyTorch path" in records[0].getMessage()
    assert "building the native kernels failed" in records[0].getMessage()
    assert (status.backend, status.mode, status.library) == ("torch", "auto", None)
    assert lnative.active_backend() == "torch"
    assert lnative.library() is None
    assert not any(tmp_path.iterdir())  # no half-built files left
    ref, _ = run("off", tensors, idx, 2, monkeypatch)
    assert torch.equal(out, ref)  # auto without kernels runs the very same PyTorch code
    lnative.reset()


def test_require_raises_with_the_compiler_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    no_compiler(monkeypatch, tmp_path, mode="require")
    with pytest.raises(lnative.NativeBuildError, match="building the native kernels failed"):
        lnative.warm()
    with pytest.raises(lnative.NativeBuildError):  # not remembered as a fallback
        lnative.library()
    lnative.reset()


def test_off_never_builds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIQUIDCORE_NATIVE_CACHE", str(tmp_path))
    monkeypatch.setenv("LIQUIDCORE_NATIVE", "off")
    lnative.reset()
    status = lnative.warm()
    assert (status.backend, status.mode, status.reason) == ("torch", "off", "LIQUIDCORE_NATIVE=off")
    assert lnative.library() is None
    assert not any(tmp_path.iterdir())
    lnative.reset()


def test_invalid_mode_is_a_value_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIQUIDCORE_NATIVE", "sometimes")
    lnative.reset()
    with pytest.raises(ValueError, match="LIQUIDCORE_NATIVE must be one of auto, off, require"):
        lnative.native_settings()
    with pytest.raises(ValueError, match="must be one of"):
        lnative.NativeSettings(mode="fast")  # type: ignore[arg-type]
    lnative.reset()


def test_settings_are_read_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIQUIDCORE_NATIVE", "OFF ")
    monkeypatch.setenv("LIQUIDCORE_NATIVE_CACHE", str(tmp_path))
    monkeypatch.setenv("CC", "my-cc -O1")
    lnative.reset()
    first = lnative.native_settings()
    assert first == lnative.NativeSettings(mode="off", cache_dir=tmp_path, compiler="my-cc -O1")
    monkeypatch.setenv("LIQUIDCORE_NATIVE", "require")
    assert lnative.native_settings() is first  # read once, not per call
    explicit = dataclasses.replace(first, mode="auto")
    lnative.configure(explicit)
    assert lnative.native_settings() is explicit
    lnative.reset()
    assert lnative.native_settings().mode == "require"  # reset: the environment again
    lnative.reset()


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"XDG_CACHE_HOME": "/xdg"}
    assert lnative.NativeSettings.from_env(env).cache_dir == Path("/xdg/liquidcore")
    home = lnative.NativeSettings.from_env({}).cache_dir
    assert home == Path.home() / ".cache" / "liquidcore"


def test_warm_builds_into_an_empty_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kernels: None
) -> None:
    monkeypatch.setenv("LIQUIDCORE_NATIVE_CACHE", str(tmp_path))
    monkeypatch.setenv("LIQUIDCORE_NATIVE", "auto")
    lnative.reset()
    status = lnative.warm()
    assert status.backend == "native"
    assert status.reason == ""
    assert status.library is not None
    assert status.library.parent == tmp_path
    assert lnative.warm() == status  # idempotent
    assert lnative.active_backend() == "native"
    lnative.reset()


def test_build_is_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kernels: None) -> None:
    monkeypatch.setenv("LIQUIDCORE_NATIVE_CACHE", str(tmp_path))
    lnative.reset()
    first = build.build()
    stamp = first.stat().st_mtime_ns
    assert build.build() == first
    assert first.stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no temporary files left
    lnative.reset()


def test_a_cached_build_loads_without_a_compiler(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kernels: None
) -> None:
    """What the images rely on: built where gcc exists, loaded where none does."""
    monkeypatch.setenv("LIQUIDCORE_NATIVE_CACHE", str(tmp_path))
    lnative.reset()
    built = build.build()
    monkeypatch.setenv("CC", "no-such-compiler")
    monkeypatch.setattr(build.sysconfig, "get_config_var", lambda name: None)
    monkeypatch.setattr(build.shutil, "which", lambda name: None)
    monkeypatch.setenv("LIQUIDCORE_NATIVE", "require")
    lnative.reset()
    with pytest.raises(build.NativeBuildError, match="no C compiler found"):
        build.compiler()
    assert build.build() == built
    assert lnative.library() is not None
    lnative.reset()


def test_without_openmp_the_kernels_are_built_single_threaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kernels: None
) -> None:
    """Where OpenMP is missing (Apple clang without libomp) the same kernels build without it
    and agree with the PyTorch path to the same tolerance."""
    monkeypatch.setenv("LIQUIDCORE_NATIVE_CACHE", str(tmp_path))
    monkeypatch.setattr(build, "openmp_flags", lambda: ["-fno-such-openmp-flag"])
    tensors, idx = problem(H=12, S=12, B=40, T=4, dtype=torch.float64, seed=7)
    out, grads = run("require", tensors, idx, 2, monkeypatch)
    status = lnative.status()
    assert status.backend == "native"
    assert status.library is not None
    assert status.library == build.library_path(build.compile_flags(openmp=False), tmp_path)
    ref_out, ref_grads = run("off", tensors, idx, 2, monkeypatch)
    torch.testing.assert_close(out, ref_out, rtol=0, atol=1e-13)
    for got, want in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-13 * (float(want.abs().max()) + 1))
    lnative.reset()


def _main(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "LIQUIDCORE_NATIVE_CACHE": str(tmp_path), **env}
    return subprocess.run(
        [sys.executable, "-m", "liquidcore.native"],
        capture_output=True,
        text=True,
        env=environ,
        cwd=REPO,
        check=False,
        timeout=120,
    )


def test_main_reports_the_fallback_and_fails_only_when_required(tmp_path: Path) -> None:
    """``python -m liquidcore.native`` (the install step) without a compiler."""
    done = _main(tmp_path, CC="false", LIQUIDCORE_NATIVE="auto")
    assert done.returncode == 0, done.stderr
    assert "not used, PyTorch path" in done.stdout
    assert done.stderr.count("native LTC kernels unavailable") == 1  # the one log line
    done = _main(tmp_path, CC="false", LIQUIDCORE_NATIVE="require")
    assert done.returncode == 1
    assert "building the native kernels failed" in done.stderr
