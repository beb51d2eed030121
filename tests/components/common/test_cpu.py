"""The streaming-process settings the ingest, quality and sample entry points apply before numpy and pyarrow load."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from components.common import cpu

KEYS = ("OPENBLAS_NUM_THREADS", "MIMALLOC_PURGE_DELAY", "MIMALLOC_ALLOW_THP")
SHOW = "import os, sys, importlib; importlib.import_module(sys.argv[1]); print(*(os.environ.get(k) for k in sys.argv[2:]))"


def _settings_seen(module: str = "components.ingest.__main__", **env: str) -> list[str]:
    clean = {k: v for k, v in os.environ.items() if k not in KEYS}
    out = subprocess.run(
        [sys.executable, "-c", SHOW, module, *KEYS],
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.split()


@pytest.mark.parametrize(
    "module", ["components.ingest.__main__", "components.quality.__main__", "components.sample.__main__"]
)
def test_the_entry_points_apply_them_before_numpy_loads(module: str) -> None:
    assert _settings_seen(module) == ["1", "-1", "0"]


def test_a_value_the_user_set_is_kept() -> None:
    assert _settings_seen(OPENBLAS_NUM_THREADS="4", MIMALLOC_ALLOW_THP="1") == ["4", "-1", "1"]


def test_nothing_is_set_once_numpy_and_pyarrow_are_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy  # noqa: F401
    import pyarrow  # noqa: F401

    for key in KEYS:
        monkeypatch.delenv(key, raising=False)
    cpu.streaming_process()
    assert all(key not in os.environ for key in KEYS)
