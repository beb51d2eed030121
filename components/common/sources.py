"""The text files a source URI names, for ingest: local files, directories and globs, zip archives
(expanded in place), ``s3://`` objects, prefixes and globs, and ``http(s)://`` URLs. See
:func:`text_sources` and docs/ingest.md.
"""

from __future__ import annotations

import fnmatch
import glob
import io
import os
import posixpath
import zipfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import BinaryIO
from urllib.parse import urlparse

from . import scratch
from .errors import UserError
from .filesystem import is_http, is_s3, split_s3
from .http_source import http_open, why
from .s3 import S3RangeReader, s3_client, s3_error, s3_list

TEXT_SUFFIX = ".txt"
ARCHIVE_SUFFIX = ".zip"
DOWNLOAD_SCRATCH = "fareflow-download"  # an http(s) archive is spooled here (components.common.scratch)
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


# --- S3 ---


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
                return io.BufferedReader(S3RangeReader(client, bucket, k, n, u), _RANGE_BUFFER)

            found += _expand_archive(name, obj_uri, open_archive, explicit)
        else:

            def open_object(k=obj["Key"], u=obj_uri) -> BinaryIO:
                try:
                    return client.get_object(Bucket=bucket, Key=k)["Body"]
                except (BotoCoreError, ClientError) as err:
                    raise s3_error(u, err) from None

            found.append(TextSource(name, obj_uri, obj["Size"], explicit, open_object))
    return found


# --- http(s) ---


def _http_sources(uri: str, stack: ExitStack) -> list[TextSource]:
    name = posixpath.basename(urlparse(uri).path) or urlparse(uri).netloc
    if name.lower().endswith(ARCHIVE_SUFFIX):
        # a scratch directory: a killed ingest leaves its (possibly GB-sized) download to the next
        spool_dir = stack.enter_context(scratch.scratch_dir(DOWNLOAD_SCRATCH))
        path = os.path.join(spool_dir, name)
        import http.client  # here, not at the top: 8 ms of every step's start-up (with email.*)

        import urllib3

        with http_open(uri) as response, open(path, "wb") as out:
            while True:
                try:
                    chunk = response.read(1 << 20)
                except (
                    OSError,
                    http.client.HTTPException,
                    urllib3.exceptions.HTTPError,
                ) as err:  # timeout, reset, cut off
                    raise UserError(f"{uri}: download failed: {why(err)}") from None
                if not chunk:
                    break
                out.write(chunk)
        return _expand_archive(name, uri, lambda: open(path, "rb"), True)
    with http_open(uri) as response:  # fail early on 404 / unreachable host
        length = response.headers.get("Content-Length")
    size = int(length) if length and length.isdigit() else None
    return [TextSource(name, uri, size, True, lambda: http_open(uri))]
