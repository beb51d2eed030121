"""``components.common.staged``: the one way a step writes its output (a step-named marker, no
overwriting of what is not an earlier output of that step, ``_SUCCESS`` last; local rename, S3
marker protocol) and the one way the next step checks it. S3 is a moto server over real HTTP
(the ``s3`` fixture of tests/conftest.py)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from components.common import storage
from components.common.errors import UserError
from components.common.staged import (
    INCOMPLETE_MARKER,
    SUCCESS_MARKER,
    StagedOutput,
    check_destination,
    require_complete,
)


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _write(out: StagedOutput, relative: str, data: bytes) -> None:
    with out.fs.open_output_stream(out.path(relative)) as fh:
        fh.write(data)


def _marker(step: str, **doc) -> bytes:
    return (json.dumps({**doc, "step": step}, indent=2, sort_keys=True) + "\n").encode()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# --- local ------------------------------------------------------------------------------------


def test_local_output_appears_only_on_commit_with_the_step_named_marker(tmp_path):
    target = tmp_path / "raw"
    with StagedOutput(str(target), "ingest") as out:
        _write(out, "year=2015/month=1/part-0.parquet", b"rows")
        assert not target.exists()  # staged in a hidden sibling until commit
        assert [p.name.startswith(".raw.staging-") for p in tmp_path.iterdir()] == [True]
        assert Path(out.root_uri) == Path(out.root) and out.root_uri.startswith(str(tmp_path))
        out.commit({"rows": 1})
    assert _files(target) == {
        "_SUCCESS": _marker("ingest", rows=1),
        "year=2015/month=1/part-0.parquet": b"rows",
    }
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw"]  # no staging or old directory left
    assert stat.S_IMODE(target.stat().st_mode) == 0o777 & ~_umask()
    assert require_complete(str(target), "ingest") == {"rows": 1, "step": "ingest"}


def test_local_commit_replaces_an_earlier_output_and_a_failure_keeps_it(tmp_path):
    target = tmp_path / "raw"
    with StagedOutput(str(target), "ingest") as out:
        _write(out, "a.parquet", b"first")
        out.commit()
    with StagedOutput(str(target), "ingest") as out:
        _write(out, "b.parquet", b"second")
        out.commit({"run": 2})
    second = {"_SUCCESS": _marker("ingest", run=2), "b.parquet": b"second"}
    assert _files(target) == second  # a.parquet is gone
    with pytest.raises(RuntimeError, match="boom"), StagedOutput(str(target), "ingest") as out:
        _write(out, "c.parquet", b"never published")
        raise RuntimeError("boom")
    assert _files(target) == second
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw"]  # the staging directory was removed


def test_local_output_refuses_what_its_step_did_not_write(tmp_path):
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"keep me")
    with pytest.raises(UserError) as err:
        StagedOutput(str(foreign), "ingest").__enter__()
    assert str(err.value) == (
        f"{foreign}: not empty and not an earlier output of the ingest step (it holds holiday.jpg, "
        "no _SUCCESS or _INCOMPLETE marker); refusing to replace it: give a new or empty location"
    )
    assert _files(foreign) == {"holiday.jpg": b"keep me"}
    (tmp_path / "file").write_bytes(b"x")
    with pytest.raises(
        UserError, match="file: exists and is a file, not a directory; give a directory or prefix"
    ):
        StagedOutput(str(tmp_path / "file"), "ingest").__enter__()
    (tmp_path / "empty").mkdir()
    with StagedOutput(str(tmp_path / "empty"), "ingest") as out:  # an empty directory is fine
        out.commit()
    assert _files(tmp_path / "empty") == {"_SUCCESS": _marker("ingest")}


@pytest.mark.parametrize(
    ("marker", "found"),
    [
        (_marker("sample"), "a _SUCCESS of the sample step"),
        (b'{"rows": 1}', "a _SUCCESS naming no step"),
        (b"", "a _SUCCESS that is not a JSON object"),
    ],
)
def test_another_steps_output_is_refused_naming_what_it_holds(tmp_path, marker, found):
    other = tmp_path / "splits"
    (other / "train").mkdir(parents=True)
    (other / "train" / "part-00000.parquet").write_bytes(b"rows")
    (other / SUCCESS_MARKER).write_bytes(marker)
    before = _files(other)
    for attempt in (
        lambda: check_destination(str(other), "ingest"),
        StagedOutput(str(other), "ingest").__enter__,
    ):
        with pytest.raises(UserError) as err:
            attempt()
        assert str(err.value).startswith(f"{other}: not empty and not an earlier output of the ingest step")
        assert f"(it holds {found})" in str(err.value) and "\n" not in str(err.value)
    assert _files(other) == before
    assert [p.name for p in tmp_path.iterdir()] == ["splits"]


def test_a_failed_earlier_output_of_the_step_may_be_replaced(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "part-0.parquet").write_bytes(b"half")
    (target / INCOMPLETE_MARKER).write_bytes(_marker("sample"))
    check_destination(str(target), "sample")
    with pytest.raises(UserError, match="not an earlier output of the ingest step"):
        check_destination(str(target), "ingest")
    with StagedOutput(str(target), "sample") as out:
        out.commit()
    assert _files(target) == {"_SUCCESS": _marker("sample")}


def test_marker_naming_another_step_is_refused(tmp_path):
    with StagedOutput(str(tmp_path / "o"), "ingest") as out, pytest.raises(ValueError, match="names step"):
        out.commit({"step": "sample"})


def test_local_output_in_an_unwritable_place_is_one_user_error(tmp_path):
    if os.geteuid() == 0:
        blocker = tmp_path / "blocker"
        blocker.write_bytes(b"a file where a directory should be")
        uri = str(blocker / "raw")
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        uri = str(locked / "raw")
    with pytest.raises(UserError, match=rf"^{uri}: cannot write here: "):
        StagedOutput(uri, "ingest").__enter__()


# --- readers ----------------------------------------------------------------------------------


def test_require_complete_names_what_is_missing_or_wrong(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "part-0.parquet").write_bytes(b"x")
    with pytest.raises(UserError) as err:
        require_complete(str(out), "quality")
    assert str(err.value) == f"{out}: no _SUCCESS marker: not a complete output (a failed or running write?)"
    (out / INCOMPLETE_MARKER).write_bytes(_marker("quality"))
    with pytest.raises(
        UserError, match=r"the quality step has not finished writing it \(_INCOMPLETE, no _SUCCESS\)"
    ):
        require_complete(str(out), "quality")
    (out / SUCCESS_MARKER).write_bytes(_marker("ingest"))
    with pytest.raises(UserError) as err:
        require_complete(str(out), "quality")
    assert (
        str(err.value)
        == f"{out}: holds a _SUCCESS of the ingest step, expected the output of the quality step"
    )
    (out / SUCCESS_MARKER).write_bytes(b"{not json")
    with pytest.raises(UserError, match="holds a _SUCCESS that is not a JSON object"):
        require_complete(str(out), "quality")
    (out / SUCCESS_MARKER).write_bytes(_marker("quality", role="output"))
    assert require_complete(str(out), "quality") == {"role": "output", "step": "quality"}
    assert storage.output_is_complete(str(out))  # the step-agnostic check agrees


# --- S3 ---------------------------------------------------------------------------------------


def test_s3_output_marker_protocol(s3):
    b = s3.bucket("out")
    s3.put(b, "raw/old.parquet", b"earlier run")
    s3.put(b, f"raw/{SUCCESS_MARKER}", _marker("ingest"))
    s3.put(b, "raw2/keep.parquet", b"a sibling prefix")  # shares the characters, not the prefix
    with StagedOutput("s3://out/raw", "ingest") as out:
        # the earlier output is gone and the location says "incomplete" before any file is written
        assert s3.keys(b, "raw/") == [f"raw/{INCOMPLETE_MARKER}"]
        assert json.loads(s3.get(b, f"raw/{INCOMPLETE_MARKER}"))["step"] == "ingest"
        assert out.root_uri == "s3://out/raw"
        _write(out, "year=2015/part-0.parquet", b"rows")
        assert SUCCESS_MARKER not in {k.rsplit("/", 1)[-1] for k in s3.keys(b, "raw/")}
        out.commit({"rows": 1})
    assert s3.keys(b, "raw/") == [f"raw/{SUCCESS_MARKER}", "raw/year=2015/part-0.parquet"]
    assert s3.get(b, f"raw/{SUCCESS_MARKER}") == _marker("ingest", rows=1)
    assert s3.keys(b, "raw2/") == ["raw2/keep.parquet"]
    assert require_complete("s3://out/raw", "ingest")["rows"] == 1


def test_s3_failed_write_never_looks_complete(s3):
    b = s3.bucket("out")
    with pytest.raises(RuntimeError), StagedOutput("s3://out/raw", "ingest") as out:
        _write(out, "part-0.parquet", b"partial")
        raise RuntimeError("writer died")
    assert s3.keys(b, "raw/") == [f"raw/{INCOMPLETE_MARKER}"]  # files removed, the marker kept
    with pytest.raises(UserError, match="the ingest step has not finished writing it"):
        require_complete("s3://out/raw", "ingest")
    with pytest.raises(UserError, match="not an earlier output of the sample step"):
        StagedOutput("s3://out/raw", "sample").__enter__()
    with StagedOutput("s3://out/raw", "ingest") as out:  # a failed output may be replaced
        out.commit()
    assert s3.keys(b, "raw/") == [f"raw/{SUCCESS_MARKER}"]


def test_s3_output_refuses_foreign_objects_and_missing_buckets(s3):
    b = s3.bucket("data")
    s3.put(b, "photos/holiday.jpg", b"keep me")
    with pytest.raises(
        UserError, match="^s3://data/photos: not empty and not an earlier output of the ingest step"
    ):
        StagedOutput("s3://data/photos", "ingest").__enter__()
    assert s3.keys(b) == ["photos/holiday.jpg"]
    with StagedOutput("s3://data/photo", "ingest") as out:  # "photos/" is a neighbour, not inside "photo/"
        out.commit()
    assert s3.keys(b) == [f"photo/{SUCCESS_MARKER}", "photos/holiday.jpg"]
    with pytest.raises(UserError, match="^s3://nobucket/raw: S3 error NoSuchBucket"):
        StagedOutput("s3://nobucket/raw", "ingest").__enter__()


def test_legacy_files_mark_an_earlier_output_only_where_there_is_no_marker(tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    (old / "model.json").write_text("{}")
    (old / "model.pt").write_bytes(b"w")
    with pytest.raises(UserError, match="not an earlier output of the train step"):
        check_destination(str(old), "train")  # without legacy names: refused
    check_destination(str(old), "train", legacy=("model.json",))
    with StagedOutput(str(old), "train", legacy=("model.json",)) as out:
        _write(out, "model.json", b"{}")
        out.commit()
    assert _files(old) == {"_SUCCESS": _marker("train"), "model.json": b"{}"}  # the old files replaced
    other = tmp_path / "other"
    other.mkdir()
    (other / "model.json").write_text("{}")
    (other / SUCCESS_MARKER).write_bytes(_marker("quality"))
    with pytest.raises(
        UserError,
        match=f"^{other}: not empty and not a model directory \\(it holds a _SUCCESS of the quality step\\)",
    ):
        check_destination(str(other), "train", legacy=("model.json",), what="a model directory")
