"""Fixtures of the demo tests: a real ``liquid serve`` process with the shipped demo model (no
``--model``), with and without API keys."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.service_process import REPO, ServiceProcess, clean_env, start_service

__all__ = ["API_KEY", "REPO", "clean_env", "has_sktime_data"]

API_KEY = "demo-test-key-0123"


def has_sktime_data() -> bool:
    from service.demo.recordings import DataMissingError, data_dir

    try:
        data_dir()
    except DataMissingError:
        return False
    return True


@pytest.fixture(scope="module")
def demo_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """The service as ``liquid serve`` runs it with no options: the demo model, no keys."""
    service = start_service([], tmp_path_factory.mktemp("demo-service"))
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="module")
def keyed_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """The same with an API key (tenant ``tenant-a``)."""
    service = start_service([], tmp_path_factory.mktemp("keyed-service"), api_key=API_KEY)
    try:
        yield service
    finally:
        service.stop()
