"""Fixtures of the storage tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from k3sreg.storage.driver import Driver
from k3sreg.storage.filesystem import FilesystemDriver
from k3sreg.storage.memory import MemoryDriver
from tests.unit.storage.pushes import Store


@pytest.fixture(params=["filesystem", "inmemory"])
def driver(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Driver]:
    """Each driver in turn: files under tmp_path, and memory."""
    yield FilesystemDriver(tmp_path) if request.param == "filesystem" else MemoryDriver()


@pytest.fixture
def store(driver: Driver) -> Store:
    """Uploads and manifests on each driver, with helpers that push whole images."""
    return Store(driver)
