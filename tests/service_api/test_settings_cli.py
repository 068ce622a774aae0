"""Settings (environment, validation), the ``liquid`` command line and the model registry."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from service import cli
from service.engine import UnknownModel
from service.engine.registry import ModelRegistry
from service.settings import Settings, is_loopback
from tests.service_api.conftest import build_model


def test_defaults() -> None:
    s = Settings()
    assert s.models == []
    assert s.redis_url is None
    assert s.device == "auto"
    assert s.api_keys == {}
    assert not s.auth_enabled
    assert s.allow_insecure is False
    assert (s.host, s.port, s.workers) == ("127.0.0.1", 8000, 1)
    assert s.max_body_bytes == 1024 * 1024
    assert s.max_events_per_request == 1000
    assert s.live_buffer == 256
    assert s.dedupe_window == 32
    assert s.resolved_device() in ("cpu", "cuda")


def test_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LIQUID_API_KEYS", "key1-abcdefgh:tenantA, key2-abcdefgh:tenantB")
    monkeypatch.setenv("LIQUID_MODELS", f"{tmp_path}/a,{tmp_path}/b")
    monkeypatch.setenv("LIQUID_REDIS_URL", "redis://localhost:6379/0")
    monkeypatch.setenv("LIQUID_MAX_GAP_S", "none")
    monkeypatch.setenv("LIQUID_ALLOW_INSECURE", "true")
    monkeypatch.setenv("LIQUID_WORKERS", "3")
    s = Settings()
    assert s.api_keys == {"key1-abcdefgh": "tenantA", "key2-abcdefgh": "tenantB"}
    assert s.models == [tmp_path / "a", tmp_path / "b"]
    assert s.max_gap_s is None
    assert s.allow_insecure
    assert s.workers == 3
    monkeypatch.setenv("LIQUID_API_KEYS", '{"key3-abcdefgh": "tenantC"}')
    monkeypatch.setenv("LIQUID_MODELS", f'["{tmp_path}/c"]')
    s = Settings(port=9000)  # explicit values win over the environment
    assert s.api_keys == {"key3-abcdefgh": "tenantC"}
    assert s.models == [tmp_path / "c"]
    assert s.port == 9000


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"max_batch": 0}, "max_batch must be >= 1"),
        ({"max_delay_ms": -1}, "max_delay_ms must be a finite number >= 0"),
        ({"state_ttl_s": 0}, "state_ttl_s must be a finite number of seconds > 0"),
        ({"max_gap_s": float("inf")}, "max_gap_s must be a finite number of seconds > 0"),
        ({"device": "gpu"}, "device must be auto, cpu, mps, cuda or cuda:N"),
        ({"api_keys": "justakey"}, "api_keys must be 'key:tenant' pairs"),
        ({"api_keys": "short:t"}, "at least 8 characters"),
        ({"api_keys": "long-enough-key:bad:tenant!"}, "not a valid tenant name"),
        ({"api_keys": '{"broken'}, "does not parse"),
        ({"redis_url": "localhost:6379"}, "redis_url must start with redis://"),
        ({"workers": 2}, "workers > 1 needs redis_url"),
        ({"workers": 0}, "workers must be >= 1"),
        ({"port": 70000}, "port must be within 0..65535"),
        ({"stream_id_pattern": "(["}, "not a valid regular expression"),
        ({"log_level": "loud"}, "log_level must be one of"),
        ({"max_body_bytes": 10}, "max_body_bytes must be >= 1024"),
        ({"max_events_per_request": 0}, "max_events_per_request must be >= 1"),
        ({"live_buffer": 0}, "live_buffer must be >= 1"),
        ({"max_queue": 10}, "max_queue (10) must be >= max_batch"),
        ({"unknown_option": 1}, "Extra inputs are not permitted"),
    ],
)
def test_validation_messages(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Settings(**values)


def test_bind_safety() -> None:
    assert is_loopback("127.0.0.1")
    assert is_loopback("::1")
    assert is_loopback("localhost")
    assert not is_loopback("0.0.0.0")
    assert not is_loopback("10.1.2.3")
    assert not is_loopback("example.com")
    Settings().check_bind_is_safe()
    with pytest.raises(
        ValueError, match=re.escape("refusing to serve without API keys on 0.0.0.0")
    ):
        Settings(host="0.0.0.0").check_bind_is_safe()
    Settings(host="0.0.0.0", allow_insecure=True).check_bind_is_safe()
    Settings(host="0.0.0.0", api_keys={"some-long-key": "t"}).check_bind_is_safe()


def test_serve_refuses_an_open_bind_without_keys(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["serve", "--host", "0.0.0.0", "--port", "1"]) == 2
    err = capsys.readouterr().err
    assert "refusing to serve without API keys" in err
    assert "--allow-insecure" in err


def test_serve_reports_bad_options_plainly(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert cli.main(["serve", "--max-batch", "0"]) == 2
    assert "max_batch: max_batch must be >= 1" in capsys.readouterr().err
    assert cli.main(["serve", "--model", str(tmp_path / "missing")]) == 2
    assert "cannot load the model(s)" in capsys.readouterr().err
    assert cli.main(["serve", "--port", "notaport"]) == 2


def test_serve_options_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIQUID_PORT", "9100")
    monkeypatch.setenv("LIQUID_MAX_BATCH", "64")
    args = cli.serve_parser().parse_args(
        [
            "--port",
            "9200",
            "--model",
            "a",
            "--model",
            "b",
            "--allow-insecure",
            "--redis-url",
            "redis://h:1/0",
            "--workers",
            "2",
            "--api-keys",
            "abcdefghij:t",
        ]
    )
    s = cli.settings_from_args(args)
    assert s.port == 9200
    assert s.max_batch == 64
    assert s.models == [Path("a"), Path("b")]
    assert s.allow_insecure
    assert s.workers == 2
    assert s.api_keys == {"abcdefghij": "t"}


def test_command_dispatch(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "serve" in out
    assert "train" in out
    assert "evaluate" in out
    assert cli.main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err
    assert cli.main([]) == 2
    assert cli.main(["serve", "--help"]) == 0
    assert "--allow-insecure" in capsys.readouterr().out
    seen: list[list[str]] = []

    class FakeTrainCli:
        @staticmethod
        def main(argv: list[str]) -> int:
            seen.append(argv)
            return 3

    monkeypatch.setattr(cli.importlib, "import_module", lambda name: FakeTrainCli)
    assert cli.main(["train", "--epochs", "2"]) == 3
    assert cli.main(["evaluate", "x"]) == 3
    assert seen == [["train", "--epochs", "2"], ["evaluate", "x"]]

    def missing(name: str) -> Any:
        raise ImportError(f"No module named {name!r}")

    monkeypatch.setattr(cli.importlib, "import_module", missing)
    assert cli.main(["train"]) == 2
    assert "liquid train: not available" in capsys.readouterr().err


def test_registry(artifacts: dict[str, Path]) -> None:
    reg = ModelRegistry.load([artifacts["pump"], artifacts["plain"]])
    assert reg.default.name == "pump"
    assert len(reg) == 2
    assert "plain" in reg
    assert [e.name for e in reg.all()] == ["pump", "plain"]
    assert reg.get(None) is reg.default
    assert reg.get("plain").features.names is None
    assert set(reg.as_mapping()) == {"pump", "plain"}
    with pytest.raises(UnknownModel, match="served models: pump, plain"):
        reg.get("nope")
    with pytest.raises(ValueError, match="model names must be unique"):
        ModelRegistry.load([artifacts["pump"], artifacts["pump_v2"]])
    unversioned = build_model("x")
    with pytest.raises(ValueError, match="has no version"):
        ModelRegistry([unversioned])
    bad = build_model("bad name!")
    bad.version = "v"
    with pytest.raises(ValueError, match="needs a name"):
        ModelRegistry([bad])


def test_demo_model_is_the_default() -> None:
    from service.engine.registry import DEMO_MODEL_DIR

    if (DEMO_MODEL_DIR / "config.json").is_file():
        reg = ModelRegistry.load([])
        assert reg.default.source == str(DEMO_MODEL_DIR)
    else:  # not shipped yet: the message says what to do
        with pytest.raises(ValueError, match="pass --model PATH"):
            ModelRegistry.load([])
