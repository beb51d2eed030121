"""The fareflow console script: dispatch, help, errors."""

from __future__ import annotations

import contextlib
import subprocess
import sys

from pipelines import cli


def test_help_lists_every_command(capsys):
    assert cli.main(["--help"]) == 0
    lines = capsys.readouterr().out.splitlines()
    start = lines.index("commands:") + 1
    listed = lines[start : lines.index("", start)]
    # one line per command, "  NAME  HELP": the name as a word of its own ("run" inside "torchrun"
    # in another command's help does not count)
    assert [line.split()[0] for line in listed] == list(cli.COMMANDS)
    for line, (name, (_, help_)) in zip(listed, cli.COMMANDS.items(), strict=True):
        assert line.startswith(f"  {name} ") and line.rstrip().endswith(help_)


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

    from pipelines.summary import print_summary

    monkeypatch.setenv("COLUMNS", "40")
    model = "/tmp/a very/long path/" + "x" * 120 + "/model"
    print_summary({"train": {"artifacts": {"model": model}}}, 1.0)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("serve it: ")]
    assert len(lines) == 1
    argv = shlex.split(lines[0].removeprefix("serve it: "))
    assert argv == ["fareflow", "serve", "--model-name", "taxi-fare", "--model-dir", model]


class _Captured(Exception):
    pass


def _parser_of(command: str, monkeypatch):
    """The argparse parser a command builds (its parse_args is intercepted)."""
    import argparse
    import importlib

    seen = []

    def capture(self, *args, **kwargs):
        seen.append(self)
        raise _Captured

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", capture)
    module = importlib.import_module(cli.COMMANDS[command][0])
    with contextlib.suppress(_Captured):
        module.main(["--help"])
    assert seen, f"{command}: no parser built"
    return seen[0]


def test_every_flag_has_help_and_no_rst_markup(monkeypatch):
    """`fareflow COMMAND --help` is read in a terminal: every flag explained, no ``markup``,
    and the usage names the command as users type it."""
    for command in cli.COMMANDS:
        parser = _parser_of(command, monkeypatch)
        assert parser.prog == f"fareflow {command}", command
        text = parser.format_help()
        assert "``" not in text and ":func:" not in text, command
        undocumented = [
            a.option_strings for a in parser._actions if a.option_strings and not (a.help or "").strip()
        ]
        assert not undocumented, f"{command}: flags without help: {undocumented}"
