"""The fareflow console script: dispatch, help, errors."""

from __future__ import annotations

import subprocess
import sys

from pipelines import cli


def test_help_lists_every_command(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in cli.COMMANDS:
        assert name in out


def test_unknown_command_is_one_line_error(capsys):
    assert cli.main(["frobnicate"]) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[0] == "fareflow: error: unknown command 'frobnicate'"


def test_every_command_module_has_main():
    import importlib

    for name, (module, _) in cli.COMMANDS.items():
        mod = importlib.import_module(module)
        assert callable(mod.main), name


def test_console_script_entry_point_runs():
    proc = subprocess.run(
        [sys.executable, "-m", "pipelines", "--version"], capture_output=True, text=True, check=True
    )
    assert proc.stdout.startswith("fareflow ")


def test_run_summary_prints_the_serve_command_on_one_copyable_line(capsys, monkeypatch):
    """A long model path on a narrow terminal: one unwrapped line, the path shell-quoted."""
    import shlex

    from pipelines.local import print_summary

    monkeypatch.setenv("COLUMNS", "40")
    model = "/tmp/a very/long path/" + "x" * 120 + "/model"
    print_summary({"train": {"artifacts": {"model": model}}}, 1.0)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("serve it: ")]
    assert len(lines) == 1
    argv = shlex.split(lines[0].removeprefix("serve it: "))
    assert argv == ["fareflow", "serve", "--model-name", "taxi-fare", "--model-dir", model]
