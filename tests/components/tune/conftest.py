"""Fixtures for the tune step: tiny splits, written with the train step's helpers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.components.train.conftest import trips, write_splits


@pytest.fixture
def make_splits(tmp_path: Path) -> Callable[..., Path]:
    """Factory: a splits directory of ``n`` trips (the train tests' fare model)."""

    def make(n: int = 2000, seed: int = 0, name: str = "splits", success: bool = True) -> Path:
        return write_splits(trips(n, seed), tmp_path / name, 1, success)

    return make


@pytest.fixture(scope="session")
def shared_splits(tmp_path_factory) -> Path:
    """One read-only splits directory for the tests that only read it."""
    return write_splits(trips(2000, 0), tmp_path_factory.mktemp("tune") / "splits", 1, True)
