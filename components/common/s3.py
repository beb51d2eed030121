"""S3 through boto3 for what pyarrow's filesystem does not do well: listing every object under a
prefix (including "directory" marker objects), deleting, ranged reads of one object (zip archives
read in place) and one-line errors naming the URI. Endpoint, region and credentials: the AWS
environment variables (components.common.filesystem).
"""

from __future__ import annotations

import io
from collections.abc import Iterator

from .errors import UserError
from .filesystem import s3_endpoint, s3_region


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


def s3_list(client, bucket: str, prefix: str) -> Iterator[dict]:
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        yield from page.get("Contents", [])


class S3RangeReader(io.RawIOBase):
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
