"""The native fused LTC loop (liquidcore.native) against the torch implementation it replaces.

The torch path (``LIQUIDCORE_NATIVE=off``) is the reference: forward states and every gradient
must agree to round-off, on ragged batches (tiles of 16 streams with padding), Δt = 0 lanes,
units without incoming synapses, and through a whole LTC model. Also the build's modes: the
``auto`` fallback when no compiler works, ``require``'s error, and the cache.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from torch import Tensor

from liquidcore.functional import ltc as F
from liquidcore.native import build
from liquidcore.native import ltc as native
from tests.model_factory import INPUTS, make_model


def problem(
    H: int, S: int, B: int, T: int, dtype: torch.dtype, seed: int
) -> tuple[tuple[Tensor, ...], F.SynapseIndex]:
    """Random inputs of ``_FusedSemiImplicit`` with ragged features: Δt = 0 for stream 0 and at
    one step of every stream, and unit 0 without incoming synapses."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(S, H, generator=g) < 0.3
    mask[:, 0] = False
    mask[1, 1] = True
    src, dst = torch.nonzero(mask, as_tuple=True)
    idx = F.synapse_index(src, dst, S, H)
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
    idx: F.SynapseIndex,
    unfolds: int,
    monkeypatch: pytest.MonkeyPatch,
    reset: bool = True,
) -> tuple[Tensor, list[Tensor]]:
    monkeypatch.setenv("LIQUIDCORE_NATIVE", mode)
    if reset:
        build.reset()
    xs = [t.clone().requires_grad_() for t in tensors]
    out = F._FusedSemiImplicit.apply(*xs, idx, unfolds)
    assert isinstance(out, Tensor)
    weight = torch.randn(out.shape, generator=torch.Generator().manual_seed(99)).to(out.dtype)
    (out * weight).sum().backward()
    grads = [x.grad for x in xs]
    assert all(g is not None for g in grads)
    return out.detach(), [g for g in grads if g is not None]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("B", [1, 5, 16, 17, 64])
def test_native_matches_torch_path(
    dtype: torch.dtype, B: int, monkeypatch: pytest.MonkeyPatch
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


def test_native_independent_of_thread_count(monkeypatch: pytest.MonkeyPatch) -> None:
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
def test_ltc_model_native_equals_torch_path(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
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
        build.reset()
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


# --- build modes --------------------------------------------------------------------------------


def test_auto_falls_back_when_the_build_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIQUIDCORE_NATIVE_CACHE", str(tmp_path))
    monkeypatch.setenv("CC", "false")  # a "compiler" that always fails
    tensors, idx = problem(H=6, S=6, B=4, T=2, dtype=torch.float32, seed=5)
    monkeypatch.setenv("LIQUIDCORE_NATIVE", "auto")
    build.reset()
    with pytest.warns(RuntimeWarning, match="native LTC kernels unavailable"):
        assert build.library() is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once, not on every call
        out, _ = run("auto", tensors, idx, 2, monkeypatch, reset=False)
    monkeypatch.delenv("CC")
    monkeypatch.delenv("LIQUIDCORE_NATIVE_CACHE")
    ref, _ = run("off", tensors, idx, 2, monkeypatch)
    assert torch.equal(out, ref)  # auto without kernels is the torch path exactly
    build.reset()


def test_require_raises_with_the_compiler_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIQUIDCORE_NATIVE_CACHE", str(tmp_path))
    monkeypatch.setenv("CC", "false")
    monkeypatch.setenv("LIQUIDCORE_NATIVE", "require")
    build.reset()
    with pytest.raises(build.NativeBuildError, match="building the native kernels failed"):
        build.library()
    build.reset()


def test_invalid_mode_is_a_value_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIQUIDCORE_NATIVE", "sometimes")
    with pytest.raises(ValueError, match="LIQUIDCORE_NATIVE must be one of auto, off, require"):
        build.native_mode()


def test_build_is_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIQUIDCORE_NATIVE_CACHE", str(tmp_path))
    first = build.build()
    stamp = first.stat().st_mtime_ns
    assert build.build() == first
    assert first.stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no temporary files left


def test_off_never_builds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIQUIDCORE_NATIVE_CACHE", str(tmp_path))
    monkeypatch.setenv("LIQUIDCORE_NATIVE", "off")
    build.reset()
    assert build.library() is None
    assert not any(tmp_path.iterdir())


def test_a_cached_build_loads_without_a_compiler(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the images rely on: built where gcc exists, loaded where none does."""
    monkeypatch.setenv("LIQUIDCORE_NATIVE_CACHE", str(tmp_path))
    built = build.build()
    monkeypatch.setenv("CC", "no-such-compiler")
    monkeypatch.setattr(build.sysconfig, "get_config_var", lambda name: None)
    monkeypatch.setattr(build.shutil, "which", lambda name: None)
    with pytest.raises(build.NativeBuildError, match="no C compiler found"):
        build.compiler()
    assert build.build() == built
    monkeypatch.setenv("LIQUIDCORE_NATIVE", "require")
    build.reset()
    assert build.library() is not None
    build.reset()
