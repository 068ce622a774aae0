"""The shipped demo model: what it is, that it is what the service serves by default, and that
its model card's numbers are what the artifact scores."""

from __future__ import annotations

import json
import re

import pytest
import torch

from liquidcore.checkpoint import load_model
from service.demo import recordings as rec
from service.demo.train import CARD_FILE, MAX_BYTES, score
from service.engine.registry import ModelRegistry
from service.settings import DEMO_MODEL_DIR
from tests.demo.conftest import has_sktime_data


def card() -> str:
    return (DEMO_MODEL_DIR / CARD_FILE).read_text()


def test_the_artifact_is_small_and_complete() -> None:
    files = {p.name for p in DEMO_MODEL_DIR.iterdir()}
    assert {"config.json", "weights.safetensors", CARD_FILE} <= files
    size = sum(p.stat().st_size for p in DEMO_MODEL_DIR.iterdir() if p.is_file())
    assert size <= MAX_BYTES


def test_it_loads_and_names_its_inputs_and_outputs() -> None:
    model = load_model(DEMO_MODEL_DIR)
    assert model.name == "demo"
    assert model.feature_names == list(rec.FEATURES)
    assert model.output_names == list(rec.ACTIVITIES)
    assert model.time_unit == pytest.approx(0.1)
    assert model.default_dt == pytest.approx(0.1)
    assert model.head.kind == "classification"
    config = json.loads((DEMO_MODEL_DIR / "config.json").read_text())
    assert config["model"]["feature_names"] == list(rec.FEATURES)
    assert config["model"]["output_names"] == list(rec.ACTIVITIES)


def test_its_version_is_stable_and_recorded_in_the_card() -> None:
    first = str(load_model(DEMO_MODEL_DIR).version)
    assert load_model(DEMO_MODEL_DIR).version == first
    assert json.loads((DEMO_MODEL_DIR / "config.json").read_text())["version"] == first
    assert re.fullmatch(r"[0-9a-f]{16}", first)
    assert f"`{first}`" in card()


def test_the_service_serves_it_when_no_model_is_given() -> None:
    registry = ModelRegistry.load([])
    assert registry.default.name == "demo"
    assert registry.default.source == str(DEMO_MODEL_DIR)
    assert registry.default.version == load_model(DEMO_MODEL_DIR).version


def test_it_answers_with_probabilities_at_every_event() -> None:
    model = load_model(DEMO_MODEL_DIR)
    h = model.init_state(3)
    x = torch.tensor([[0.0] * 6, [5.0, -5.0, 1.0, 0.5, 0.5, 2.0], [1e3] * 6])
    for dt in (0.1, 0.0, 0.7, 3600.0):
        y, h = model.step(x, torch.full((3,), dt), h)
        p = model.present(y)
        assert torch.isfinite(p).all()
        assert torch.allclose(p.sum(-1), torch.ones(3), atol=1e-5)


@pytest.mark.skipif(not has_sktime_data(), reason="the BasicMotions files come with sktime")
def test_the_cards_accuracy_is_what_the_artifact_scores() -> None:
    model = load_model(DEMO_MODEL_DIR)
    test = rec.held_out_recordings()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the training script scored it
    try:
        scores = score(model, test)
    finally:
        torch.set_num_threads(threads)
    text = card()
    last = re.search(r"test last-event accuracy ([\d.]+) \((\d+)/(\d+)\)", text)
    every = re.search(r"test all-event accuracy ([\d.]+) \((\d+)/(\d+)\)", text)
    assert last, text
    assert every, text
    assert int(last.group(3)) == len(test) == 40
    assert int(every.group(3)) == scores.events
    # Exact on the machine that trained it; another CPU's float32 round-off may flip an argmax
    # that sits on a tie, so allow a hair of slack rather than a flaky test.
    assert abs(int(last.group(2)) - scores.last_correct) <= 1
    assert abs(int(every.group(2)) - scores.all_correct) <= 0.002 * scores.events
    # a demo model worth showing: clearly better than chance (0.25) on unseen recordings
    assert scores.last_correct / len(test) >= 0.8
