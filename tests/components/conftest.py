"""Fixtures shared by the component tests."""

import pytest


@pytest.fixture
def local_kfp(tmp_path):
    """kfp.local with SubprocessRunner(use_venv=False) and a per-test pipeline root; yields the root."""
    from kfp import local

    root = tmp_path / "pipeline_root"
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root), raise_on_error=True)
    yield root
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "unused"))
