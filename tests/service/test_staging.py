"""Padded batch buckets and host staging (service.engine.staging): a batch run at a bucket size
answers as the batch run at its own size, within the numerics contract."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from liquidcore.numerics import replay_mismatch
from service.engine.compute import Row, forward_rows
from service.engine.staging import (
    HostStaging,
    bucket_size,
    check_buckets,
    default_buckets,
)
from tests.model_factory import INPUTS, make_model

CPU = torch.device("cpu")


def test_bucket_size_is_the_smallest_that_holds_the_batch() -> None:
    buckets = check_buckets([64, 8, 1, 8])
    assert buckets == (1, 8, 64)
    assert [bucket_size(n, buckets) for n in (1, 2, 8, 9, 64, 65)] == [1, 8, 8, 64, 64, 65]
    assert bucket_size(5, ()) == 5
    with pytest.raises(ValueError, match="positive"):
        check_buckets([0, 4])


def test_no_buckets_on_a_cpu_and_a_handful_up_to_max_batch_on_cuda() -> None:
    assert default_buckets(CPU, 256) == ()
    cuda = default_buckets(torch.device("cuda"), 300)
    assert cuda == (1, 4, 16, 64, 256, 300)


def _rows(rng: np.random.Generator, state_size: int, lengths: list[int]) -> list[Row]:
    rows = []
    for b, n in enumerate(lengths):
        h0 = None if b % 3 == 0 else rng.normal(size=state_size).astype("<f4").tobytes()
        rows.append(
            Row.of(
                h0,
                rng.normal(size=(n, INPUTS)).tolist(),
                rng.uniform(0.01, 2.0, size=n).tolist(),
                [bool(i == 0 and b % 4 == 1) for i in range(n)],
            )
        )
    return rows


@pytest.mark.parametrize("kind", ["cfc", "ltc"])
@pytest.mark.parametrize("lengths", [[1] * 5, [1, 3, 2, 1, 4, 1, 2]])
def test_a_padded_batch_answers_as_the_unpadded_one(kind: str, lengths: list[int]) -> None:
    model = make_model(kind)
    rows = _rows(np.random.default_rng(7), model.state_size, lengths)
    with torch.inference_mode():
        y, h = forward_rows(model, rows, CPU)
        y_pad, h_pad = forward_rows(model, rows, CPU, buckets=(4, 16), staging=HostStaging(CPU))
    assert y_pad.shape == y.shape
    assert h_pad.shape == h.shape
    steps = max(lengths)
    for b, n in enumerate(lengths):  # padded steps of a row are not outputs
        problem = replay_mismatch(y_pad[b, :n], y[b, :n], steps)
        assert problem is None, problem
    problem = replay_mismatch(h_pad, h, steps)
    assert problem is None, problem


def test_staging_on_a_cpu_copies_read_only_arrays() -> None:
    staging = HostStaging(CPU)
    assert not staging.pinned
    frozen = np.frombuffer(np.arange(4, dtype="<f4").tobytes(), dtype="<f4")
    out = staging.to_device("h0", frozen)
    assert out.tolist() == [0.0, 1.0, 2.0, 3.0]


def test_settings_take_buckets_and_refuse_bad_ones() -> None:
    from pydantic import ValidationError

    from service.app import engine_config
    from service.settings import Settings

    assert engine_config(Settings(batch_buckets=[64, 8])).batch_buckets == (64, 8)
    assert engine_config(Settings()).batch_buckets is None
    with pytest.raises(ValidationError, match="batch_buckets"):
        Settings(batch_buckets=[0])
