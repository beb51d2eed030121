"""Fixtures for the tune step: tiny splits, written with the train step's helpers."""

from __future__ import annotations

import uuid
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


@pytest.fixture(scope="session")
def postgres_server():
    """A real PostgreSQL server on a free loopback port for this test session (tests/postgres.py):
    skipped with one line where PostgreSQL is not installed, failed under POSTGRES_REQUIRED=1."""
    from tests import postgres

    postgres.require()
    server = postgres.PostgresServer.start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def storage_url(request, tmp_path) -> str:
    """An empty study storage: a SQLite file, or a new database on the session's PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'study.db'}"
    server = request.getfixturevalue("postgres_server")
    return server.create_database(f"study_{uuid.uuid4().hex[:12]}")
