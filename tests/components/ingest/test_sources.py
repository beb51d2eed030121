"""Every kind of source gives the same rows: local dir, glob, file, zip (in place), s3://
(moto over real HTTP, reading and writing), http:// and https:// (local servers)."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from components.common import contract
from components.common.errors import UserError
from components.common.storage import SUCCESS_MARKER, s3_filesystem

from .conftest import assert_invariant, read_quarantine, read_raw, row, run, write_file

ROWS = 20_000  # the `generated` fixture


@pytest.fixture(scope="module")
def reference(generated, tmp_path_factory) -> pa.Table:
    """The generated files ingested from the local directory: what every source must give."""
    out = tmp_path_factory.mktemp("reference") / "raw"
    summary = run(generated, out)
    assert summary["files"] == 2 and summary["rows_read"] == ROWS
    return read_raw(out)


def _same_rows(got: pa.Table, want: pa.Table, *, archive: str | None = None) -> None:
    if archive:  # archive members are named "taxi_2015.zip!taxi_2015_01.txt"
        names = pa.array([f"{archive}!{n}" for n in want.column(contract.SOURCE_FILE).to_pylist()])
        want = want.set_column(want.schema.get_field_index(contract.SOURCE_FILE), contract.SOURCE_FILE, names)
    assert got.num_rows == want.num_rows
    assert got.equals(want)


def _month(table: pa.Table, month: int) -> pa.Table:
    return table.filter(pa.compute.equal(table.column(contract.SOURCE_FILE), f"taxi_2015_{month:02d}.txt"))


# --- local ---


def test_local_directory(generated, reference, tmp_path) -> None:
    summary = run(generated, tmp_path / "raw")
    assert_invariant(summary)
    assert summary["rows_written"] + summary["rows_quarantined"] == ROWS
    assert summary["bytes_read"] == sum(p.stat().st_size for p in generated.glob("taxi_*.txt"))
    assert set(summary["partitions"]) >= {"year=2015/month=1", "year=2015/month=2"}
    assert sum(summary["partitions"].values()) == summary["rows_written"]
    assert [f["name"] for f in summary["file_stats"]] == ["taxi_2015_01.txt", "taxi_2015_02.txt"]
    _same_rows(read_raw(tmp_path / "raw"), reference)


def test_glob_selects_files(generated, reference, tmp_path) -> None:
    summary = run(f"{generated}/taxi_2015_0[2]*.txt", tmp_path / "raw")
    assert summary["files"] == 1
    _same_rows(read_raw(tmp_path / "raw"), _month(reference, 2))


def test_single_file(generated, reference, tmp_path) -> None:
    run(generated / "taxi_2015_01.txt", tmp_path / "raw")
    _same_rows(read_raw(tmp_path / "raw"), _month(reference, 1))


def test_zip_read_in_place(generated_zip, reference, tmp_path, monkeypatch) -> None:
    def no_extract(*args, **kwargs):
        raise AssertionError("archives must be streamed, not extracted")

    monkeypatch.setattr(zipfile.ZipFile, "extract", no_extract)
    monkeypatch.setattr(zipfile.ZipFile, "extractall", no_extract)
    archive = generated_zip / "taxi_2015.zip"
    summary = run(archive, tmp_path / "raw")
    assert summary["files"] == 2
    assert summary["bytes_read"] == sum(i.file_size for i in zipfile.ZipFile(archive).infolist())
    _same_rows(read_raw(tmp_path / "raw"), reference, archive="taxi_2015.zip")
    run(generated_zip, tmp_path / "raw_from_dir")  # a directory of archives
    _same_rows(read_raw(tmp_path / "raw_from_dir"), reference, archive="taxi_2015.zip")


def test_directory_skips_other_text_files(generated, reference, tmp_path) -> None:
    data = tmp_path / "data"
    shutil.copytree(generated, data)
    (data / "README.txt").write_text("not trip data\n")
    summary = run(data, tmp_path / "raw")
    assert summary["skipped"] == [str(data / "README.txt")]
    _same_rows(read_raw(tmp_path / "raw"), reference)


def test_zip_members_other_than_months_are_skipped(tmp_path) -> None:
    good = write_file(tmp_path / "src" / "taxi_2015_03.txt", [row(1), row(2)])
    archive = tmp_path / "in" / "taxi_2015.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(good, "2015/taxi_2015_03.txt")
        zf.writestr("README.txt", "hello\n")
    summary = run(archive, tmp_path / "raw")
    assert summary["rows_written"] == 2
    assert summary["skipped"] == [f"{archive}!README.txt"]
    assert set(read_raw(tmp_path / "raw").column(contract.SOURCE_FILE).to_pylist()) == {
        "taxi_2015.zip!taxi_2015_03.txt"
    }


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing", "{d}/missing: no such file or directory"),
        (lambda d: d, "{d}: no .txt or .zip files in this directory"),
        (lambda d: f"{d}/*.txt", "{d}/*.txt: no .txt or .zip files match this pattern"),
        (
            lambda d: write_file(d / "trips.txt", [row(1)]),
            "{d}/trips.txt: file name is not taxi_YYYY_MM.txt (the month of rows without a pick-up time comes from it)",
        ),
        (
            lambda d: (d / "taxi_2015.zip").write_bytes(b"PK\x03\x04 not really") and d / "taxi_2015.zip",
            "{d}/taxi_2015.zip: not a readable zip archive (File is not a zip file)",
        ),
        (
            lambda d: write_file(d / "notes.txt", ["x"]).parent,
            "{d}: no taxi_YYYY_MM.txt files found (only: notes.txt)",
        ),
    ],
    ids=[
        "missing path",
        "empty directory",
        "glob matching nothing",
        "explicit file with another name",
        "corrupt zip",
        "no month files",
    ],
)
def test_unusable_source(make, message, tmp_path) -> None:
    d = tmp_path / "in"
    d.mkdir()
    source = make(d)
    with pytest.raises(UserError) as err:
        run(source, tmp_path / "raw")
    assert str(err.value) == message.format(d=d)
    assert not (tmp_path / "raw").exists()


# --- S3 (moto server over HTTP) ---


def test_s3_read_prefix_glob_key_and_zip(s3, generated, generated_zip, reference, tmp_path) -> None:
    s3.bucket("raw")
    for path in sorted(generated.glob("taxi_*.txt")):
        s3.put("raw", f"dc/txt/{path.name}", path)
    s3.put("raw", "dc/txt/notes.md", b"ignored: not .txt")
    s3.put("raw", "dc/zip/taxi_2015.zip", generated_zip / "taxi_2015.zip")

    summary = run("s3://raw/dc/txt", tmp_path / "prefix")
    assert summary["files"] == 2 and summary["rows_read"] == ROWS
    _same_rows(read_raw(tmp_path / "prefix"), reference)

    run("s3://raw/dc/txt/taxi_2015_0[1]*", tmp_path / "glob")
    _same_rows(read_raw(tmp_path / "glob"), _month(reference, 1))

    run("s3://raw/dc/txt/taxi_2015_02.txt", tmp_path / "key")
    _same_rows(read_raw(tmp_path / "key"), _month(reference, 2))

    run("s3://raw/dc/zip/", tmp_path / "zip")  # ranged GETs into the archive
    _same_rows(read_raw(tmp_path / "zip"), reference, archive="taxi_2015.zip")


def test_s3_write(s3, generated, reference, tmp_path) -> None:
    s3.bucket("lake")
    summary = run(generated, "s3://lake/raw/v1")
    keys = s3.keys("lake")
    assert "raw/v1/_SUCCESS" in keys and "raw/v1/_INCOMPLETE" not in keys
    assert "raw/v1/_quarantine/part-00000.parquet" in keys
    assert {k for k in keys if k.endswith(".parquet") and "year=" in k} == {
        f"raw/v1/{f}" for f in summary["parquet_files"]
    }
    fs = s3_filesystem()
    dataset = ds.dataset(
        "lake/raw/v1",
        filesystem=fs,
        schema=pa.unify_schemas([contract.RAW_SCHEMA, contract.PARTITION_SCHEMA]),
        partitioning=ds.partitioning(contract.PARTITION_SCHEMA, flavor="hive"),
    )
    got = dataset.to_table().sort_by(
        [(contract.SOURCE_FILE, "ascending"), (contract.SOURCE_LINE, "ascending")]
    )
    _same_rows(got, reference)
    # Re-running replaces the previous output (same keys, same bytes).
    before = {k: s3.get("lake", k) for k in keys}
    run(generated, "s3://lake/raw/v1")
    assert {k: s3.get("lake", k) for k in s3.keys("lake")} == before


def test_s3_errors(s3, tmp_path) -> None:
    s3.bucket("raw")
    with pytest.raises(UserError) as err:
        run("s3://raw/nothing-here", tmp_path / "raw")
    assert str(err.value) == "s3://raw/nothing-here: no .txt or .zip objects at this location"
    with pytest.raises(UserError) as err:
        run("s3://no-such-bucket/x", tmp_path / "raw")
    assert str(err.value).startswith("s3://no-such-bucket/x: S3 error NoSuchBucket")


def test_s3_unreachable_endpoint(monkeypatch, tmp_path) -> None:
    from tests.conftest import free_port

    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with pytest.raises(UserError, match=r"^s3://raw/x: cannot reach S3 endpoint http://127\.0\.0\.1:\d+: "):
        run("s3://raw/x", tmp_path / "raw")


# --- http(s) ---


def test_http_text_and_zip(http_serve, generated, generated_zip, reference, tmp_path) -> None:
    base = http_serve(generated)
    summary = run(f"{base}/taxi_2015_01.txt", tmp_path / "txt")
    assert summary["bytes_read"] == (generated / "taxi_2015_01.txt").stat().st_size
    _same_rows(read_raw(tmp_path / "txt"), _month(reference, 1))
    zip_base = http_serve(generated_zip)
    run(f"{zip_base}/taxi_2015.zip", tmp_path / "zip")
    _same_rows(read_raw(tmp_path / "zip"), reference, archive="taxi_2015.zip")


def test_http_errors(http_serve, generated, tmp_path, monkeypatch) -> None:
    from components.common import http_source
    from tests.conftest import free_port

    monkeypatch.setattr(http_source, "HTTP_BACKOFF_S", 0.01)  # a refused connection is retried
    base = http_serve(generated)
    with pytest.raises(UserError) as err:
        run(f"{base}/taxi_2015_09.txt", tmp_path / "raw")
    assert str(err.value) == f"{base}/taxi_2015_09.txt: HTTP 404 File not found"
    url = f"http://127.0.0.1:{free_port()}/taxi_2015_01.txt"
    with pytest.raises(
        UserError, match=r"^http://127\.0\.0\.1:\d+/taxi_2015_01\.txt: cannot download: .*refused"
    ):
        run(url, tmp_path / "raw")


def test_https_verified(https_serve, generated, reference, tmp_path, monkeypatch) -> None:
    base = https_serve(generated)
    assert base.startswith("https://")
    run(f"{base}/taxi_2015_02.txt", tmp_path / "raw")
    _same_rows(read_raw(tmp_path / "raw"), _month(reference, 2))
    # Certificates are verified: without the test CA trusted, the download is refused.
    monkeypatch.setenv("SSL_CERT_FILE", str(Path(__file__)))  # a file with no certificate in it
    with pytest.raises(UserError, match="CERTIFICATE_VERIFY_FAILED"):
        run(f"{base}/taxi_2015_02.txt", tmp_path / "raw2")


def test_quarantine_location_explicit(tmp_path) -> None:
    src = write_file(tmp_path / "in" / "taxi_2015_01.txt", [row(1), row(2, FAREAMOUNT="x")])
    summary = run(src, tmp_path / "raw", quarantine_uri=str(tmp_path / "bad"))
    assert summary["quarantine"] == str(tmp_path / "bad")
    assert (tmp_path / "bad" / SUCCESS_MARKER).exists()
    assert not (tmp_path / "raw" / "_quarantine").exists()
    q = read_quarantine(tmp_path / "bad" / "part-00000.parquet")
    assert q.column("reason").to_pylist() == ["FAREAMOUNT: not a number: 'x'"]


def test_same_month_twice_is_refused(tmp_path) -> None:
    data = tmp_path / "in"
    month = write_file(data / "taxi_2015_01.txt", [row(1), row(2)])
    with zipfile.ZipFile(data / "taxi_2015.zip", "w") as zf:
        zf.write(month, "taxi_2015_01.txt")
    with pytest.raises(UserError) as err:
        run(data, tmp_path / "raw")
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("taxi_2015_01.txt found twice: ")
    assert f"{data}/taxi_2015_01.txt" in message and f"{data}/taxi_2015.zip!taxi_2015_01.txt" in message
    assert not (tmp_path / "raw").exists()


def test_s3_folder_marker_key_is_a_prefix(s3, generated, reference, tmp_path) -> None:
    s3.bucket("bkt")
    s3.put("bkt", "raw/", b"")  # the "folder" object consoles create
    for path in sorted(generated.glob("taxi_*.txt")):
        s3.put("bkt", f"raw/{path.name}", path)
    summary = run("s3://bkt/raw/", tmp_path / "out")
    assert summary["files"] == 2
    _same_rows(read_raw(tmp_path / "out"), reference)


def test_http_zip_download_failure_is_one_line(monkeypatch, tmp_path) -> None:
    """A download that stalls mid-body (a timeout) is a UserError naming the URL."""
    import socket
    import threading

    from components.common import http_source

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    release = threading.Event()

    def stall() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\nPK\x03\x04partial")
            release.wait(10)

    thread = threading.Thread(target=stall, daemon=True)
    thread.start()
    monkeypatch.setattr(http_source, "HTTP_TIMEOUT_S", 0.5)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/taxi_2015.zip"
    try:
        with pytest.raises(UserError) as err:
            run(url, tmp_path / "raw")
    finally:
        release.set()
        thread.join(5)
        listener.close()
    message = str(err.value)
    assert message.startswith(f"{url}: download failed: ") and "\n" not in message
    assert "timed out" in message


class _Flaky:
    """A local HTTP server answering ``statuses`` in turn (then 200 with ``body``), counting GETs."""

    def __init__(self, statuses: list[int], body: bytes) -> None:
        import http.server
        import threading

        self.gets = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                outer.gets += 1
                status = statuses[outer.gets - 1] if outer.gets <= len(statuses) else 200
                payload = body if status == 200 else b"busy"
                self.send_response(status)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/taxi_2015_01.txt"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_http_source_retries_a_busy_server(generated, reference, tmp_path, monkeypatch) -> None:
    """503/429 answers are retried with backoff (urllib3 Retry) and the download then succeeds;
    a 404 is the caller's mistake and is not retried; a server busy to the last try is one line."""
    from components.common import http_source

    monkeypatch.setattr(http_source, "HTTP_BACKOFF_S", 0.01)
    body = (generated / "taxi_2015_01.txt").read_bytes()
    # the listing's GET meets 503 then 429; the read's GET gets the file at once
    flaky = _Flaky([503, 429], body)
    try:
        run(flaky.url, tmp_path / "raw")
    finally:
        flaky.close()
    assert flaky.gets == 4  # 503, 429, 200 (size, fail early), 200 (the read)
    _same_rows(read_raw(tmp_path / "raw"), _month(reference, 1))

    missing = _Flaky([404] * 10, body)
    try:
        with pytest.raises(UserError, match=r": HTTP 404 "):
            run(missing.url, tmp_path / "raw404")
    finally:
        missing.close()
    assert missing.gets == 1

    busy = _Flaky([503] * 100, body)
    try:
        with pytest.raises(UserError) as err:
            run(busy.url, tmp_path / "raw503")
    finally:
        busy.close()
    assert busy.gets == http_source.HTTP_RETRIES + 1
    message = str(err.value)
    assert message.startswith(f"{busy.url}: cannot download: ") and "503" in message and "\n" not in message


def test_http_zip_download_sweeps_a_killed_ingests_spool(
    http_serve, generated_zip, reference, tmp_path, dead_scratch
):
    """An http(s) archive is spooled in a scratch directory: one a killed ingest left goes with
    the next download, and a finished one leaves none."""
    from components.common.sources import DOWNLOAD_SCRATCH

    left = dead_scratch(DOWNLOAD_SCRATCH)
    run(f"{http_serve(generated_zip)}/taxi_2015.zip", tmp_path / "zip")
    _same_rows(read_raw(tmp_path / "zip"), reference, archive="taxi_2015.zip")
    assert not left.exists()
    assert list(left.parent.glob(f"{DOWNLOAD_SCRATCH}-*")) == []
