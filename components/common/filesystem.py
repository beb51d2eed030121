"""URIs to filesystems: local paths and ``s3://`` (pyarrow; S3-compatible endpoints), and a JSON
document read from one.

S3 settings come from the usual AWS environment variables, so MinIO / SeaweedFS work:
``AWS_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL_S3``), ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION`` / ``AWS_REGION``. ``http(s)://`` is a
read-only source (components.common.sources), never a filesystem here.
"""

from __future__ import annotations

import json
import os
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


def read_json(fs: pafs.FileSystem, path: str, missing: str) -> object:
    """The JSON document at ``path`` on ``fs``. ``UserError(missing)`` when there is no such
    file, ``UserError("PATH: not valid JSON (...)")`` when it does not parse."""
    try:
        with fs.open_input_stream(path) as src:
            return json.loads(src.read().decode("utf-8"))
    except FileNotFoundError:
        raise UserError(missing) from None
    except (ValueError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: not valid JSON ({err})") from None
