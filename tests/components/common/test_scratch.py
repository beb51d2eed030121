"""Scratch directories: a killed process's is removed by the next one made with its prefix; a
live process's, another prefix's and another PID namespace's are never touched."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from components.common import scratch

ROOT = Path(__file__).resolve().parents[3]


def killed_scratch(parent: Path, prefix: str) -> Path:
    """A scratch directory made by a child process that was then killed with -9."""
    code = (
        "import sys, time; from components.common import scratch; "
        f"print(scratch.make({prefix!r}, {str(parent)!r}), flush=True); time.sleep(60)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    path = Path(proc.stdout.readline().strip())
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    assert path.is_dir() and path.parent == parent  # left behind by the kill
    (path / "model.pt").write_bytes(b"x" * 1000)
    return path


def test_a_killed_process_scratch_goes_with_the_next_one_made(tmp_path):
    dead = killed_scratch(tmp_path, "ff-test")
    other_prefix = killed_scratch(tmp_path, "ff-other")
    with scratch.scratch_dir("ff-test", str(tmp_path)) as mine:
        assert Path(mine).is_dir() and f"-pid{os.getpid()}-" in mine
        assert not dead.exists()  # swept
        assert other_prefix.exists()  # another prefix: not ours to judge
        # this process is alive: a second sweep keeps its directory
        assert scratch.sweep("ff-test", str(tmp_path)) == []
        assert Path(mine).is_dir()
    assert not Path(mine).exists()  # removed when the block ends


def test_an_exception_still_removes_the_scratch(tmp_path):
    with pytest.raises(RuntimeError), scratch.scratch_dir("ff-test", str(tmp_path)) as path:
        raise RuntimeError("trial failed")
    assert not Path(path).exists()


def test_only_this_namespace_and_user_and_dead_pids_are_swept(tmp_path, monkeypatch):
    ns = scratch._pid_namespace()
    dead_pid = 2**22 + 12345  # above pid_max's default: no such process
    assert not scratch._alive(dead_pid)
    ours = tmp_path / f"ff-test-ns{ns}-pid{dead_pid}-abc"
    elsewhere = tmp_path / f"ff-test-ns{int(ns) + 1}-pid{dead_pid}-abc"  # another container's
    unnamed = tmp_path / "ff-test-somethingelse"  # not a scratch name: kept
    a_file = tmp_path / f"ff-test-ns{ns}-pid{dead_pid}-file"
    for d in (ours, elsewhere, unnamed):
        d.mkdir()
    a_file.write_text("not a directory")
    assert scratch.sweep("ff-test", str(tmp_path)) == [str(ours)]
    assert not ours.exists() and elsewhere.exists() and unnamed.exists() and a_file.exists()
    # another user's directory is left alone
    theirs = tmp_path / f"ff-test-ns{ns}-pid{dead_pid}-xyz"
    theirs.mkdir()
    monkeypatch.setattr(os, "getuid", lambda: os.stat(theirs).st_uid + 1)
    assert scratch.sweep("ff-test", str(tmp_path)) == [] and theirs.exists()


def test_a_longer_prefix_is_not_swept_with_a_shorter_one(tmp_path):
    ns = scratch._pid_namespace()
    dead_pid = 2**22 + 12345  # no such process
    longer = tmp_path / f"ff-test-sub-ns{ns}-pid{dead_pid}-abc"  # prefix "ff-test-sub", not "ff-test"
    longer.mkdir()
    assert scratch.sweep("ff-test", str(tmp_path)) == [] and longer.is_dir()
    assert scratch.sweep("ff-test-sub", str(tmp_path)) == [str(longer)] and not longer.exists()


def test_a_missing_parent_sweeps_nothing(tmp_path):
    assert scratch.sweep("ff-test", str(tmp_path / "absent")) == []
