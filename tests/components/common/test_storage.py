"""``components.common.storage`` on its own: URIs and filesystems, the text sources a URI
names (local files, directories, globs, zip archives, ``s3://``, ``http(s)://``), JSON and
the step-agnostic completion check (``StagedOutput`` and the step-named markers:
test_staged.py). S3 is a moto server over real HTTP (the ``s3`` fixture of tests/conftest.py)."""

from __future__ import annotations

import io
import json
import tempfile
import zipfile
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from components.common import sources, storage
from components.common.errors import UserError
from components.common.storage import SUCCESS_MARKER, text_sources


def _names(uri: str) -> list[tuple[str, bool]]:
    with text_sources(uri) as found:
        return [(s.name, s.explicit) for s in found]


def _contents(uri: str) -> dict[str, bytes]:
    with text_sources(uri) as found:
        out = {}
        for s in found:
            with s.open() as fh:
                out[s.name] = fh.read()
        return out


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# --- URIs and filesystems -------------------------------------------------------------------


def test_uri_kinds_and_s3_split():
    assert storage.is_s3("s3://b/k") and not storage.is_s3("/data/s3://x")
    assert storage.is_http("http://h/f") and storage.is_http("https://h/f") and not storage.is_http("ftp://h")
    assert storage.split_s3("s3://bucket/a/b/") == ("bucket", "a/b/")
    assert storage.split_s3("s3://bucket") == ("bucket", "")
    for bad in ("s3:///key", "/local/path", "gs://b/k"):
        with pytest.raises(UserError, match=r"expected s3://bucket/prefix"):
            storage.split_s3(bad)


def test_s3_settings_come_from_the_aws_environment(monkeypatch):
    for var in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(var, raising=False)
    assert storage.s3_endpoint() is None and storage.s3_region() == "us-east-1"
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://general:9000")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    assert storage.s3_endpoint() == "http://general:9000" and storage.s3_region() == "eu-west-1"
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://seaweedfs.kubeflow:9000")  # the S3-specific one wins
    monkeypatch.setenv("AWS_REGION", "us-west-2")
    assert storage.s3_endpoint() == "http://seaweedfs.kubeflow:9000" and storage.s3_region() == "us-west-2"


def test_resolve_filesystem(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    fs, path = storage.resolve_filesystem("~/data")
    assert isinstance(fs, pafs.LocalFileSystem) and path == str(tmp_path / "data")
    assert storage.resolve_filesystem("rel/dir")[1] == str(tmp_path / "rel" / "dir")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    fs, path = storage.resolve_filesystem("s3://bucket/clean/")
    assert isinstance(fs, pafs.S3FileSystem) and path == "bucket/clean"
    with pytest.raises(UserError, match="http.s. is a read-only source here"):
        storage.resolve_filesystem("https://example.org/out")


# --- local sources --------------------------------------------------------------------------


def test_local_file_directory_and_glob(tmp_path):
    (tmp_path / "taxi_2015_02.txt").write_bytes(b"feb\n")
    (tmp_path / "taxi_2015_01.txt").write_bytes(b"january\n")
    (tmp_path / "notes.md").write_bytes(b"not a source")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "taxi_2016_01.txt").write_bytes(b"not listed: not recursive")
    _zip(tmp_path / "taxi_2017.zip", {"taxi_2017_01.txt": b"archived\n"})

    # a directory: its .txt and .zip files, sorted, found by listing (not explicit)
    assert _names(str(tmp_path)) == [
        ("taxi_2015_01.txt", False),
        ("taxi_2015_02.txt", False),
        ("taxi_2017.zip!taxi_2017_01.txt", False),
    ]
    with text_sources(str(tmp_path / "taxi_2015_01.txt")) as (one,):
        assert (one.name, one.explicit, one.size, one.uri) == (
            "taxi_2015_01.txt", True, 8, str(tmp_path / "taxi_2015_01.txt"),
        )  # fmt: skip
    assert _names(str(tmp_path / "taxi_2015_*.txt")) == [
        ("taxi_2015_01.txt", False),
        ("taxi_2015_02.txt", False),
    ]
    assert _contents(str(tmp_path / "*"))["taxi_2017.zip!taxi_2017_01.txt"] == b"archived\n"


def test_zip_members_are_streamed_and_close_the_archive(tmp_path):
    archive = _zip(
        tmp_path / "taxi_2015.zip",
        {
            "taxi_2015_02.txt": b"b" * 100_000,
            "2015/taxi_2015_01.txt": b"a\n" * 10,  # a member in a folder: named by its base name
            "README.pdf": b"skipped: not text",
        },
    )
    with text_sources(str(archive)) as found:
        assert [(s.name, s.uri, s.size, s.explicit) for s in found] == [
            ("taxi_2015.zip!taxi_2015_01.txt", f"{archive}!2015/taxi_2015_01.txt", 20, False),
            ("taxi_2015.zip!taxi_2015_02.txt", f"{archive}!taxi_2015_02.txt", 100_000, False),
        ]
        stream = found[1].open()
        buf = bytearray(7)
        assert stream.readinto(buf) == 7 and bytes(buf) == b"bbbbbbb"
        assert len(stream.read()) == 100_000 - 7
        owners = stream._owners  # the ZipFile and the file it reads
        stream.close()
        assert all(o.fp is None if isinstance(o, zipfile.ZipFile) else o.closed for o in owners)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: d / "missing", "no such file or directory"),
        (lambda d: (d / "empty").mkdir() or d / "empty", "no .txt or .zip files in this directory"),
        (lambda d: d / "*.txt", "no .txt or .zip files match this pattern"),
        (
            lambda d: (d / "bad.zip").write_bytes(b"PK not really") and d / "bad.zip",
            "not a readable zip archive",
        ),
        (lambda d: _zip(d / "x.zip", {"a.csv": b"1"}), "the archive holds no .txt files"),
    ],
)
def test_unusable_local_source_is_one_user_error(make, message, tmp_path):
    uri = str(make(tmp_path))
    with pytest.raises(UserError) as err:
        _names(uri)
    assert str(err.value).startswith(uri) and message in str(err.value) and "\n" not in str(err.value)


def test_a_listed_archive_without_text_members_adds_nothing(tmp_path):
    _zip(tmp_path / "other.zip", {"a.csv": b"1"})
    (tmp_path / "taxi_2015_01.txt").write_bytes(b"x\n")
    assert _names(str(tmp_path)) == [("taxi_2015_01.txt", False)]  # only a named archive must hold text


# --- S3 sources (moto) ----------------------------------------------------------------------


def test_s3_key_prefix_glob_and_zip(s3, tmp_path):
    b = s3.bucket("raw")
    s3.put(b, "2015/taxi_2015_02.txt", b"feb\n")
    s3.put(b, "2015/taxi_2015_01.txt", b"jan\n")
    s3.put(b, "2015/notes.csv", b"not a source")
    s3.put(b, "2015-extra/taxi_2015_03.txt", b"a sibling prefix, not under 2015/")
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as zf:
        zf.writestr("taxi_2016_01.txt", b"z" * 50_000)
    s3.put(b, "zips/taxi_2016.zip", zipped.getvalue())

    assert _names("s3://raw/2015") == [("taxi_2015_01.txt", False), ("taxi_2015_02.txt", False)]
    assert _names("s3://raw/2015/") == _names("s3://raw/2015")
    assert _names("s3://raw/2015/notes.csv") == [("notes.csv", True)]  # named exactly: read as given
    assert _names("s3://raw/2015*/taxi_*.txt") == [  # sorted by key: "2015-extra/" < "2015/"
        ("taxi_2015_03.txt", False), ("taxi_2015_01.txt", False), ("taxi_2015_02.txt", False),
    ]  # fmt: skip
    contents = _contents("s3://raw")
    assert contents["taxi_2015_01.txt"] == b"jan\n"
    assert contents["taxi_2016.zip!taxi_2016_01.txt"] == b"z" * 50_000  # read in place (ranged GETs)
    with text_sources("s3://raw/2015/taxi_2015_01.txt") as (one,):
        assert (one.uri, one.size, one.explicit) == ("s3://raw/2015/taxi_2015_01.txt", 4, True)


def test_s3_glob_is_case_sensitive_like_keys(s3):
    b = s3.bucket("raw")
    s3.put(b, "taxi_2015_01.txt", b"x")
    with pytest.raises(UserError, match="no .txt or .zip objects at this location"):
        _names("s3://raw/TAXI_*")


def test_s3_range_reader_seeks_like_a_file(s3):
    b = s3.bucket("raw")
    data = bytes(range(256)) * 4
    s3.put(b, "blob.zip", data)
    reader = storage.S3RangeReader(storage.s3_client(), b, "blob.zip", len(data), "s3://raw/blob.zip")
    assert reader.seekable() and reader.seek(-10, io.SEEK_END) == len(data) - 10
    assert reader.read(100) == data[-10:]  # a read past the end returns what is there
    assert reader.read(5) == b""
    assert reader.seek(-3, io.SEEK_SET) == 0  # clamped at the start
    assert reader.seek(300) == 300 and reader.read(4) == data[300:304] and reader.tell() == 304
    assert reader.seek(2, io.SEEK_CUR) == 306 and reader.read(2) == data[306:308]


def test_s3_errors_name_the_uri(s3):
    with pytest.raises(UserError, match=r"^s3://nobucket/x: S3 error NoSuchBucket"):
        _names("s3://nobucket/x")
    s3.bucket("empty")
    with pytest.raises(UserError, match=r"^s3://empty/p: no .txt or .zip objects at this location"):
        _names("s3://empty/p")


def test_s3_unreachable_endpoint_is_one_line(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # discard port: nothing listens
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    monkeypatch.setattr(
        sources, "s3_client", lambda: _client_without_retries(storage.s3_endpoint()), raising=True
    )
    with pytest.raises(UserError) as err:
        _names("s3://b/k")
    assert str(err.value).startswith(
        "s3://b/k: cannot reach S3 endpoint http://127.0.0.1:9"
    ) and "\n" not in str(err.value)


def _client_without_retries(endpoint):
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", config=Config(retries={"max_attempts": 1})
    )


# --- http(s) sources ------------------------------------------------------------------------


def test_http_text_and_zip(http_serve, tmp_path):
    (tmp_path / "taxi_2015_01.txt").write_bytes(b"over http\n")
    _zip(tmp_path / "taxi_2016.zip", {"taxi_2016_01.txt": b"zipped\n", "taxi_2016_02.txt": b"more\n"})
    url = http_serve(tmp_path)
    with text_sources(f"{url}/taxi_2015_01.txt") as (one,):
        assert (one.name, one.size, one.explicit) == ("taxi_2015_01.txt", 10, True)
        with one.open() as fh:
            assert fh.read() == b"over http\n"
    assert _contents(f"{url}/taxi_2016.zip") == {
        "taxi_2016.zip!taxi_2016_01.txt": b"zipped\n",
        "taxi_2016.zip!taxi_2016_02.txt": b"more\n",
    }
    with pytest.raises(UserError, match=r"/missing.txt: HTTP 404"):
        _names(f"{url}/missing.txt")


def test_http_zip_is_spooled_for_the_context_only(http_serve, tmp_path, monkeypatch):
    served, spool = tmp_path / "served", tmp_path / "spool"
    spool.mkdir()
    _zip(served / "taxi_2016.zip", {"taxi_2016_01.txt": b"zipped\n"})
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    url = f"{http_serve(served)}/taxi_2016.zip"
    with text_sources(url) as (member,):
        assert member.uri == f"{url}!taxi_2016_01.txt"  # named by the URL, not the spool file
        assert [
            p.relative_to(spool).parent.name.startswith("fareflow-download-") for p in spool.rglob("*.zip")
        ] == [True]
        with member.open() as fh:
            assert fh.read() == b"zipped\n"
    assert list(spool.iterdir()) == []  # the download is removed when the context exits


# --- JSON and completion markers ------------------------------------------------------------


def test_read_json(tmp_path):
    fs = pafs.LocalFileSystem()
    (tmp_path / "ok.json").write_text(json.dumps({"rows": 3}))
    (tmp_path / "bad.json").write_text("{not json")
    assert storage.read_json(fs, str(tmp_path / "ok.json"), "unused") == {"rows": 3}
    with pytest.raises(UserError, match="^stats.json is missing: run quality first$"):
        storage.read_json(fs, str(tmp_path / "none.json"), "stats.json is missing: run quality first")
    with pytest.raises(UserError, match=rf"^{tmp_path}/bad.json: not valid JSON \("):
        storage.read_json(fs, str(tmp_path / "bad.json"), "unused")


def test_complete_means_a_success_marker(tmp_path, s3):
    out = tmp_path / "out"
    out.mkdir()
    (out / "part-0.parquet").write_bytes(b"x")
    assert not storage.output_is_complete(str(out))
    with pytest.raises(UserError, match=rf"^{out}: no _SUCCESS marker: not a complete output"):
        storage.require_complete(str(out))
    (out / SUCCESS_MARKER).write_bytes(b"")
    assert storage.output_is_complete(str(out))
    storage.require_complete(str(out))
    assert not storage.output_is_complete(str(tmp_path / "absent"))
    b = s3.bucket("out")
    s3.put(b, "raw/part-0.parquet", b"x")
    assert not storage.output_is_complete("s3://out/raw")
    s3.put(b, f"raw/{SUCCESS_MARKER}", b"{}")
    assert storage.output_is_complete("s3://out/raw") and storage.output_is_complete("s3://out/raw/")


def test_the_facade_reexports_the_split_modules():
    from components.common import filesystem, markers, s3

    assert storage.resolve_filesystem is filesystem.resolve_filesystem
    assert storage.s3_client is s3.s3_client and storage.text_sources is sources.text_sources
    assert storage.require_complete is markers.require_complete
