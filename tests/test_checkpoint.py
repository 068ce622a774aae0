"""Artifacts: bit-identical round trip, content-hash versions, clear errors, no pickle."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from liquidcore.checkpoint import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    ArtifactError,
    load_model,
    read_config,
    save_model,
)
from tests.model_factory import VARIANTS, irregular_batch, make_model


@pytest.mark.parametrize("kind", VARIANTS)
def test_round_trip_is_bit_identical(kind: str, tmp_path: Path) -> None:
    model = make_model(kind)
    version = save_model(model, tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert loaded.version == version == model.version
    assert type(loaded.cell) is type(model.cell)
    assert loaded.get_config() == model.get_config()
    x, dt = irregular_batch(model)
    with torch.no_grad():
        y0, h0 = model(x, dt)
        y1, h1 = loaded(x, dt)
    assert torch.equal(y0, y1)
    assert torch.equal(h0, h1)


def test_float64_model_round_trips_in_float64(tmp_path: Path) -> None:
    model = make_model("ltc").double()
    save_model(model, tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert next(loaded.parameters()).dtype == torch.float64
    x, dt = irregular_batch(model)
    with torch.no_grad():
        assert torch.equal(model(x.double(), dt)[0], loaded(x.double(), dt)[0])


def test_version_is_a_content_hash(tmp_path: Path) -> None:
    a = save_model(make_model("cfc", seed=0), tmp_path / "a")
    b = save_model(make_model("cfc", seed=0), tmp_path / "b")
    c = save_model(make_model("cfc", seed=1), tmp_path / "c")
    assert a == b
    assert a != c
    renamed = make_model("cfc", seed=0)
    renamed.name = "other"
    assert save_model(renamed, tmp_path / "d") != a


def test_artifact_holds_json_and_safetensors_only(tmp_path: Path) -> None:
    save_model(make_model("wired_cfc"), tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [CONFIG_FILE, WEIGHTS_FILE]
    config = json.loads((tmp_path / "m" / CONFIG_FILE).read_text())
    assert config["format_version"] == 1
    assert config["model"]["cell"]["type"] == "wired_cfc"
    assert config["model"]["cell"]["wiring"]["type"] == "auto_ncp"
    raw = (tmp_path / "m" / WEIGHTS_FILE).read_bytes()
    header_len = int.from_bytes(raw[:8], "little")
    json.loads(raw[8 : 8 + header_len])  # a safetensors header, not a pickle


def test_unknown_format_version_is_refused(tmp_path: Path) -> None:
    save_model(make_model("cfc"), tmp_path / "m")
    path = tmp_path / "m" / CONFIG_FILE
    config = json.loads(path.read_text())
    config["format_version"] = 99
    path.write_text(json.dumps(config))
    with pytest.raises(ArtifactError, match="unknown artifact format_version 99"):
        load_model(tmp_path / "m")


def test_altered_weights_are_refused(tmp_path: Path) -> None:
    save_model(make_model("cfc"), tmp_path / "m")
    path = tmp_path / "m" / WEIGHTS_FILE
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(ArtifactError, match="does not match the weights_sha256"):
        load_model(tmp_path / "m")


def test_altered_config_is_refused(tmp_path: Path) -> None:
    save_model(make_model("cfc"), tmp_path / "m")
    path = tmp_path / "m" / CONFIG_FILE
    config = json.loads(path.read_text())
    config["model"]["time_unit"] = 2.0
    path.write_text(json.dumps(config))
    with pytest.raises(ArtifactError, match="config was altered"):
        load_model(tmp_path / "m")


@pytest.mark.parametrize("missing", [CONFIG_FILE, WEIGHTS_FILE])
def test_missing_file_is_refused(missing: str, tmp_path: Path) -> None:
    save_model(make_model("cfc"), tmp_path / "m")
    (tmp_path / "m" / missing).unlink()
    with pytest.raises(ArtifactError, match=f"no {missing}"):
        load_model(tmp_path / "m")


def test_not_json_config_is_refused(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / CONFIG_FILE).write_text("{not json")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        read_config(tmp_path / "m")
