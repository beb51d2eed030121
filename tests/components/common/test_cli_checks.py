"""components.common.cli: inputs and outputs checked up front, one line each."""

from __future__ import annotations

import pytest

from components.common import cli
from components.common.errors import UserError, cli_entry


def test_missing_input_names_the_flag(tmp_path):
    with pytest.raises(UserError, match=r"^--input .*/nope: no such file or directory$"):
        cli.input_path("--input", str(tmp_path / "nope"))
    (tmp_path / "f").write_text("x")
    with pytest.raises(UserError, match="not a directory"):
        cli.input_path("--input", str(tmp_path / "f"), kind="dir")
    cli.input_path("--input", str(tmp_path), kind="dir")
    cli.input_path("--input", "s3://bucket/none")  # remote: left to the step
    cli.input_path("--input", str(tmp_path / "*.txt"))  # glob: left to the step


def test_output_under_a_file_or_unwritable_place_is_refused(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(UserError, match=r"^--summary-json .*: .*/file is not a directory$"):
        cli.output_file("--summary-json", str(blocker / "s.json"))
    with pytest.raises(UserError, match="is a directory, expected a file path"):
        cli.output_file("--summary-json", str(tmp_path))
    with pytest.raises(UserError, match="exists and is not a directory"):
        cli.output_dir("--output", str(blocker))
    # /proc refuses new files even to root (os.access would say yes): a real write is tried.
    with pytest.raises(UserError, match=r"^--workdir /proc/fareflow-x: cannot create files in /proc"):
        cli.output_dir("--workdir", "/proc/fareflow-x")


def test_creatable_outputs_pass_and_nothing_is_left_behind(tmp_path):
    cli.output_dir("--output", str(tmp_path / "a" / "b"))
    cli.output_file("--summary-json", str(tmp_path / "c" / "s.json"))
    assert list(tmp_path.iterdir()) == []  # checks create nothing


def test_cli_entry_prefix_is_the_prog_and_one_line(capsys):
    @cli_entry(prog="fareflow thing")
    def main(argv=None):
        raise UserError("bad\ninput   here")

    assert main([]) == 2
    assert capsys.readouterr().err == "fareflow thing: error: bad input here\n"
