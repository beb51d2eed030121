"""Storage I/O by URI: local paths, ``s3://`` (boto3 / pyarrow S3, S3-compatible endpoints).

S3 settings come from the usual AWS environment variables, so MinIO / SeaweedFS work:
``AWS_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL_S3``), ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION`` / ``AWS_REGION``.
"""

from __future__ import annotations

import fnmatch
import glob
import http.client
import io
import os
import posixpath
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import BinaryIO
from urllib.parse import urlparse

import pyarrow.fs as pafs

from .errors import UserError


def is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


def is_http(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def s3_endpoint() -> str | None:
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


def s3_region() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


def split_s3(uri: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` -> ("bucket", "a/b")."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise UserError(f"{uri}: expected s3://bucket/prefix")
    return parsed.netloc, parsed.path.lstrip("/")


def s3_filesystem() -> pafs.S3FileSystem:
    endpoint = s3_endpoint()
    kwargs: dict = {"region": s3_region()}
    if endpoint:
        parsed = urlparse(endpoint)
        kwargs["endpoint_override"] = parsed.netloc or endpoint
        kwargs["scheme"] = parsed.scheme or "https"
    if os.environ.get("AWS_ACCESS_KEY_ID"):
        kwargs["access_key"] = os.environ["AWS_ACCESS_KEY_ID"]
        kwargs["secret_key"] = os.environ.get("AWS_SECRET_ACCESS_KEY", "")
        if os.environ.get("AWS_SESSION_TOKEN"):
            kwargs["session_token"] = os.environ["AWS_SESSION_TOKEN"]
    return pafs.S3FileSystem(**kwargs)


def resolve_filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """Map a local path or ``s3://`` URI to a pyarrow filesystem and a path inside it."""
    if is_s3(uri):
        bucket, key = split_s3(uri)
        return s3_filesystem(), f"{bucket}/{key}".rstrip("/")
    if is_http(uri):
        raise UserError(f"{uri}: http(s) is a read-only source here; give a local path or s3:// URI")
    return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(uri))


# --- reading sources: local files, globs, zip archives, s3://, http(s):// -------------------

TEXT_SUFFIX = ".txt"
ARCHIVE_SUFFIX = ".zip"
_GLOB_CHARS = frozenset("*?[")
# Read size for remote range requests (zip archives on S3 are read in place with ranged GETs).
_RANGE_BUFFER = 8 << 20


@dataclass(frozen=True)
class TextSource:
    """One text file to read: a plain file, an archive member, an S3 object or a URL.

    ``name`` is the lineage name (``taxi_2015_01.txt``, archive members as
    ``taxi_2015.zip!taxi_2015_01.txt``); ``uri`` says where it is, for messages;
    ``size`` is its uncompressed size in bytes when known; ``explicit`` is true when the
    user named this very file (not found by listing a directory, prefix, glob or archive).
    ``open()`` returns a readable binary stream the caller closes.
    """

    name: str
    uri: str
    size: int | None
    explicit: bool
    opener: Callable[[], BinaryIO] = field(repr=False, compare=False)

    def open(self) -> BinaryIO:
        return self.opener()


def has_glob(uri: str) -> bool:
    return any(c in _GLOB_CHARS for c in uri)


@contextmanager
def text_sources(uri: str) -> Iterator[list[TextSource]]:
    """List the ``.txt`` files a source URI names, expanding ``.zip`` archives in place.

    ``uri`` is a local file, directory (its ``*.txt``/``*.zip`` files, not recursive) or glob;
    ``s3://bucket/key`` (one object), ``s3://bucket/prefix`` (every ``.txt``/``.zip`` below
    it) or an ``s3://`` glob over keys; or an ``http(s)://`` URL of one file. Archives are
    read in place (local: the file; S3: ranged GETs; http: spooled to a temporary file,
    since a zip's directory is at its end). Sorted by name, so runs are deterministic.
    Resources (spooled downloads) live until the context exits. Raises ``UserError`` for
    a missing path, nothing matching, an unreadable archive or an unreachable endpoint.
    """
    with ExitStack() as stack:
        if is_s3(uri):
            found = _s3_sources(uri)
        elif is_http(uri):
            found = _http_sources(uri, stack)
        else:
            found = _local_sources(uri)
        yield found


def _expand_archive(
    archive_name: str, archive_uri: str, open_archive: Callable[[], BinaryIO], explicit: bool
) -> list[TextSource]:
    """The ``.txt`` members of a zip archive, each opened by streaming decompression."""
    try:
        with open_archive() as fh, zipfile.ZipFile(fh) as zf:
            members = [
                i for i in zf.infolist() if not i.is_dir() and i.filename.lower().endswith(TEXT_SUFFIX)
            ]
    except zipfile.BadZipFile as err:
        raise UserError(f"{archive_uri}: not a readable zip archive ({err})") from None
    if not members and explicit:
        raise UserError(f"{archive_uri}: the archive holds no {TEXT_SUFFIX} files")

    def opener(member: str) -> Callable[[], BinaryIO]:
        def open_member() -> BinaryIO:
            fh = open_archive()
            try:
                zf = zipfile.ZipFile(fh)
                return _ClosingStream(zf.open(member), (zf, fh))
            except BaseException:
                fh.close()
                raise

        return open_member

    return [
        TextSource(
            name=f"{archive_name}!{posixpath.basename(m.filename)}",
            uri=f"{archive_uri}!{m.filename}",
            size=m.file_size,
            explicit=False,
            opener=opener(m.filename),
        )
        for m in sorted(members, key=lambda m: m.filename)
    ]


class _ClosingStream(io.RawIOBase):
    """A readable stream that also closes the objects it was opened from."""

    def __init__(self, inner: BinaryIO, owners: tuple) -> None:
        self._inner = inner
        self._owners = owners

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        return self._inner.read(size)

    def readinto(self, buf) -> int:  # type: ignore[override]
        data = self._inner.read(len(buf))
        buf[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._inner.close()
            for owner in self._owners:
                owner.close()
        super().close()


def _local_file_sources(path: str, explicit: bool) -> list[TextSource]:
    name = os.path.basename(path)
    if name.lower().endswith(ARCHIVE_SUFFIX):
        return _expand_archive(name, path, lambda: open(path, "rb"), explicit)
    return [
        TextSource(
            name=name,
            uri=path,
            size=os.path.getsize(path),
            explicit=explicit,
            opener=lambda: open(path, "rb"),
        )
    ]


def _is_candidate(name: str) -> bool:
    low = name.lower()
    return low.endswith(TEXT_SUFFIX) or low.endswith(ARCHIVE_SUFFIX)


def _local_sources(uri: str) -> list[TextSource]:
    path = os.path.expanduser(uri)
    if os.path.isfile(path):
        return _local_file_sources(path, explicit=True)
    if os.path.isdir(path):
        files = sorted(
            os.path.join(path, n)
            for n in os.listdir(path)
            if _is_candidate(n) and os.path.isfile(os.path.join(path, n))
        )
        if not files:
            raise UserError(f"{uri}: no {TEXT_SUFFIX} or {ARCHIVE_SUFFIX} files in this directory")
    elif has_glob(path):
        files = sorted(p for p in glob.glob(path) if os.path.isfile(p) and _is_candidate(p))
        if not files:
            raise UserError(f"{uri}: no {TEXT_SUFFIX} or {ARCHIVE_SUFFIX} files match this pattern")
    else:
        raise UserError(f"{uri}: no such file or directory")
    return [s for f in files for s in _local_file_sources(f, explicit=False)]


# --- S3 (boto3) ---


def s3_client():
    """A boto3 S3 client for the endpoint/region/credentials in the AWS environment variables."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=s3_endpoint(),
        region_name=s3_region(),
        config=Config(retries={"max_attempts": 5, "mode": "standard"}),
    )


def s3_error(uri: str, err: Exception) -> UserError:
    from botocore.exceptions import ClientError

    if isinstance(err, ClientError):
        code = err.response.get("Error", {}).get("Code", "?")
        msg = err.response.get("Error", {}).get("Message", "")
        return UserError(f"{uri}: S3 error {code}{': ' + msg if msg else ''}")
    return UserError(f"{uri}: cannot reach S3 endpoint {s3_endpoint() or '(AWS default)'}: {err}")


def _s3_sources(uri: str) -> list[TextSource]:
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, key = split_s3(uri)
    client = s3_client()
    try:
        if has_glob(key):
            literal = key[: min(key.index(c) for c in _GLOB_CHARS if c in key)]
            objects = [o for o in s3_list(client, bucket, literal) if fnmatch.fnmatchcase(o["Key"], key)]
            explicit = False
        else:
            # A key ending in "/" (an S3 "folder" marker object) is a prefix, never a file.
            is_file_key = key and not key.endswith("/")
            exact = [o for o in s3_list(client, bucket, key) if o["Key"] == key] if is_file_key else []
            if exact:
                objects, explicit = exact, True
            else:
                prefix = key.rstrip("/") + "/" if key else ""
                objects, explicit = list(s3_list(client, bucket, prefix)), False
    except (BotoCoreError, ClientError) as err:
        raise s3_error(uri, err) from None
    objects = sorted((o for o in objects if explicit or _is_candidate(o["Key"])), key=lambda o: o["Key"])
    if not objects:
        raise UserError(f"{uri}: no {TEXT_SUFFIX} or {ARCHIVE_SUFFIX} objects at this location")
    found: list[TextSource] = []
    for obj in objects:
        obj_uri = f"s3://{bucket}/{obj['Key']}"
        name = posixpath.basename(obj["Key"])
        if name.lower().endswith(ARCHIVE_SUFFIX):
            size = obj["Size"]

            def open_archive(k=obj["Key"], n=size, u=obj_uri) -> BinaryIO:
                return io.BufferedReader(_S3RangeReader(client, bucket, k, n, u), _RANGE_BUFFER)

            found += _expand_archive(name, obj_uri, open_archive, explicit)
        else:

            def open_object(k=obj["Key"], u=obj_uri) -> BinaryIO:
                try:
                    return client.get_object(Bucket=bucket, Key=k)["Body"]
                except (BotoCoreError, ClientError) as err:
                    raise s3_error(u, err) from None

            found.append(TextSource(name, obj_uri, obj["Size"], explicit, open_object))
    return found


def s3_list(client, bucket: str, prefix: str) -> Iterator[dict]:
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        yield from page.get("Contents", [])


class _S3RangeReader(io.RawIOBase):
    """A seekable read-only view of an S3 object through ranged GETs (for zip archives)."""

    def __init__(self, client, bucket: str, key: str, size: int, uri: str) -> None:
        self._client, self._bucket, self._key, self._size, self._uri = client, bucket, key, size, uri
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buf) -> int:  # type: ignore[override]
        from botocore.exceptions import BotoCoreError, ClientError

        end = min(self._pos + len(buf), self._size)
        if end <= self._pos:
            return 0
        try:
            body = self._client.get_object(
                Bucket=self._bucket, Key=self._key, Range=f"bytes={self._pos}-{end - 1}"
            )["Body"]
            data = body.read()
        except (BotoCoreError, ClientError) as err:
            raise s3_error(self._uri, err) from None
        buf[: len(data)] = data
        self._pos += len(data)
        return len(data)


# --- http(s) (urllib3 with retries; TLS verified with the default trust store, SSL_CERT_FILE honoured) ---


HTTP_TIMEOUT_S = 60.0
# Connection errors and the answers a busy or restarting server gives (429, 5xx) are retried
# with exponential backoff (0.5 s, 1 s, 2 s, ...; a Retry-After header is honoured); a 4xx is
# the caller's mistake and fails at once. A stream cut off mid-body is not retried here.
HTTP_RETRIES = 5
HTTP_BACKOFF_S = 0.5
HTTP_RETRY_STATUSES = (429, 500, 502, 503, 504)


def _http_retry():
    import urllib3

    return urllib3.Retry(
        total=HTTP_RETRIES,
        other=0,  # a TLS or protocol failure is not a busy server: no retry
        backoff_factor=HTTP_BACKOFF_S,
        status_forcelist=HTTP_RETRY_STATUSES,
        allowed_methods=frozenset({"GET"}),
        respect_retry_after_header=True,
        raise_on_status=True,
    )


def _http_open(uri: str):
    """A streaming GET of ``uri`` (a file-like response the caller closes). A pool per call:
    its TLS context reads the trust store (SSL_CERT_FILE) as it is now."""
    import urllib3

    pool = urllib3.PoolManager(headers={"User-Agent": "fareflow-ingest"})
    try:
        response = pool.request(
            "GET",
            uri,
            preload_content=False,
            retries=_http_retry(),
            timeout=urllib3.Timeout(connect=HTTP_TIMEOUT_S, read=HTTP_TIMEOUT_S),
        )
    except urllib3.exceptions.MaxRetryError as err:
        reason = err.reason or err
        if isinstance(reason, urllib3.exceptions.ResponseError):  # 429/5xx to the last try
            raise UserError(f"{uri}: cannot download: {reason} ({HTTP_RETRIES} retries)") from None
        raise UserError(f"{uri}: cannot download: {_why(reason)}") from None
    except (urllib3.exceptions.HTTPError, OSError) as err:
        raise UserError(f"{uri}: cannot download: {_why(err)}") from None
    if response.status >= 400:
        response.release_conn()
        raise UserError(f"{uri}: HTTP {response.status} {response.reason}")
    return response


def _why(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _http_sources(uri: str, stack: ExitStack) -> list[TextSource]:
    name = posixpath.basename(urlparse(uri).path) or urlparse(uri).netloc
    if name.lower().endswith(ARCHIVE_SUFFIX):
        spool_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="fareflow-download-"))
        path = os.path.join(spool_dir, name)
        import urllib3

        with _http_open(uri) as response, open(path, "wb") as out:
            while True:
                try:
                    chunk = response.read(1 << 20)
                except (
                    OSError,
                    http.client.HTTPException,
                    urllib3.exceptions.HTTPError,
                ) as err:  # timeout, reset, cut off
                    raise UserError(f"{uri}: download failed: {_why(err)}") from None
                if not chunk:
                    break
                out.write(chunk)
        return _expand_archive(name, uri, lambda: open(path, "rb"), True)
    with _http_open(uri) as response:  # fail early on 404 / unreachable host
        length = response.headers.get("Content-Length")
    size = int(length) if length and length.isdigit() else None
    return [TextSource(name, uri, size, True, lambda: _http_open(uri))]


# --- completion markers (the protocol: components.common.staged) ---------------------------

SUCCESS_MARKER = "_SUCCESS"
INCOMPLETE_MARKER = "_INCOMPLETE"


def read_json(fs: pafs.FileSystem, path: str, missing: str) -> object:
    """The JSON document at ``path`` on ``fs``. ``UserError(missing)`` when there is no such
    file, ``UserError("PATH: not valid JSON (...)")`` when it does not parse."""
    import json

    try:
        with fs.open_input_stream(path) as src:
            return json.loads(src.read().decode("utf-8"))
    except FileNotFoundError:
        raise UserError(missing) from None
    except (ValueError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: not valid JSON ({err})") from None


def output_is_complete(uri: str) -> bool:
    """Whether ``uri`` holds a committed output (its ``_SUCCESS`` marker exists), whichever step
    wrote it. ``components.common.staged.require_complete`` also checks the step."""
    fs, root = resolve_filesystem(uri)
    return fs.get_file_info(f"{root}/{SUCCESS_MARKER}").type == pafs.FileType.File


def not_complete(uri: str) -> UserError:
    return UserError(f"{uri}: no {SUCCESS_MARKER} marker: not a complete output (a failed or running write?)")


def require_complete(uri: str) -> None:
    """Step-agnostic: any step's ``_SUCCESS`` will do (train's and tune's split readers); readers
    that know the step they expect use ``components.common.staged.require_complete``."""
    if not output_is_complete(uri):
        raise not_complete(uri)
