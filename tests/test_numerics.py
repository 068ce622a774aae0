"""The replay tolerance of the numerics contract (liquidcore.numerics, docs/numerics.md)."""

from __future__ import annotations

import math

import pytest

from liquidcore.numerics import REPLAY_ATOL, REPLAY_RTOL, replay_atol, replay_mismatch


def test_the_bound_grows_with_the_square_root_of_the_replay_length() -> None:
    assert replay_atol(0) == replay_atol(1) == REPLAY_ATOL
    assert replay_atol(10_000) == pytest.approx(100 * REPLAY_ATOL)
    with pytest.raises(ValueError, match="steps must be >= 0"):
        replay_atol(-1)


def test_values_within_the_bound_agree_and_beyond_it_are_named() -> None:
    want = [[1.0, -0.5], [0.0, 2.0]]
    inside = [[1.0 + REPLAY_ATOL, -0.5], [0.0, 2.0 + 2 * REPLAY_RTOL]]
    assert replay_mismatch(inside, want, steps=1) is None
    beyond = [[1.0, -0.5], [3 * REPLAY_ATOL, 2.0]]
    problem = replay_mismatch(beyond, want, steps=1)
    assert problem is not None
    assert "value (1, 0)" in problem
    assert replay_mismatch(beyond, want, steps=9) is None  # 3x the bound after 9 steps


def test_shape_and_non_finite_values_never_agree() -> None:
    assert replay_mismatch([1.0, 2.0], [1.0], steps=1) == "shapes differ: (2,) vs (1,)"
    assert replay_mismatch([math.nan], [math.nan], steps=1) == "non-finite values"
    assert replay_mismatch([], [], steps=1) is None
