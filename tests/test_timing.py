"""The Δt boundary: shapes are normalised in one place and bad values are refused there."""

from __future__ import annotations

import math

import pytest
import torch

from liquidcore.timing import check_elapsed, elapsed_for_sequence, elapsed_for_step


@pytest.mark.parametrize(
    ("dt", "expected"),
    [
        (0.5, [[0.5]] * 4),
        (torch.tensor(2.0), [[2.0]] * 4),
        (torch.tensor([0.0, 1.0, 2.0, 3.0]), [[0.0], [1.0], [2.0], [3.0]]),
        (torch.tensor([[0.0], [1.0], [2.0], [3.0]]), [[0.0], [1.0], [2.0], [3.0]]),
    ],
)
def test_step_shapes_per_stream(dt: object, expected: list[list[float]]) -> None:
    out = elapsed_for_step(dt, 4)  # type: ignore[arg-type]
    assert out.shape == (4, 1)
    assert out.tolist() == expected


def test_step_never_squeezes_a_batch_of_one() -> None:
    assert elapsed_for_step(torch.tensor([3.0]), 1).tolist() == [[3.0]]


@pytest.mark.parametrize("shape", [(3,), (4, 2), (1, 4), (4, 1, 1)])
def test_step_refuses_ambiguous_shapes(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="elapsed time for a step of 4 streams"):
        elapsed_for_step(torch.ones(shape), 4)


@pytest.mark.parametrize("bad", [-1.0, -1e-12, math.nan, math.inf, -math.inf])
def test_bad_values_raise_at_the_boundary(bad: float) -> None:
    with pytest.raises(ValueError, match="elapsed time must be"):
        elapsed_for_step(torch.tensor([1.0, bad]), 2)
    with pytest.raises(ValueError, match="elapsed time must be"):
        elapsed_for_sequence(torch.tensor([[1.0, bad]]), 1, 2)


@pytest.mark.parametrize("n", [1, 16, 17, 300])  # a few values are read as a list, more reduced
@pytest.mark.parametrize(
    ("bad", "message"),
    [(-1e-12, "must be >= 0; got -1e-12"), (math.nan, "must be finite"), (math.inf, "finite")],
)
def test_bad_values_raise_whatever_the_batch_size(n: int, bad: float, message: str) -> None:
    dt = torch.rand(n, dtype=torch.float64)
    check_elapsed(dt)
    dt[n // 2] = bad
    with pytest.raises(ValueError, match=message):
        check_elapsed(dt)


def test_extreme_but_valid_values_pass() -> None:
    check_elapsed(torch.tensor([0.0, 1e-9, 1e9]))


def test_sequence_shapes() -> None:
    assert elapsed_for_sequence(None, 2, 3).tolist() == [[1.0] * 3] * 2
    assert elapsed_for_sequence(0.25, 2, 3).tolist() == [[0.25] * 3] * 2
    dt = torch.arange(6.0).reshape(2, 3)
    assert torch.equal(elapsed_for_sequence(dt, 2, 3), dt)
    assert torch.equal(elapsed_for_sequence(dt.unsqueeze(-1), 2, 3), dt)


def test_sequence_refuses_a_flat_time_axis_even_when_it_fits() -> None:
    # [T] would be ambiguous when B == T: refused instead of guessed.
    with pytest.raises(ValueError, match=r"\[3, 3\]"):
        elapsed_for_sequence(torch.ones(3), 3, 3)
