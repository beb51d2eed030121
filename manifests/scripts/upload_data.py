#!/usr/bin/env python3
"""Upload a local directory to an ``s3://bucket/prefix/`` (the data step of ``kind-test.sh``).

    upload_data.py --src DIR --dest s3://bucket/prefix/ [--delete]

Endpoint, region and credentials come from the AWS environment variables
(``AWS_ENDPOINT_URL``, ``AWS_DEFAULT_REGION``, ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``) and are never printed. Creates the bucket when it is missing;
``--delete`` removes objects under the prefix that are not in DIR (left over from an earlier
run with other months), since the pipeline's ingest reads every trip file under the prefix.
Exit status: 0 uploaded, 1 on an S3 error, 2 on bad input.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
from urllib.parse import urlparse


def split(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"{uri}: expected s3://bucket/prefix/")
    prefix = parsed.path.lstrip("/")
    return parsed.netloc, (prefix.rstrip("/") + "/") if prefix else ""


def client():
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None,
        region_name=os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3, "mode": "standard"}),
    )


def ensure_bucket(s3, bucket: str) -> None:
    from botocore.exceptions import ClientError

    try:
        s3.head_bucket(Bucket=bucket)
        return
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
            raise
    try:
        s3.create_bucket(Bucket=bucket)
        print(f"created bucket {bucket}")
    except ClientError as err:  # created meanwhile (KFP's own init job makes mlpipeline)
        if err.response.get("Error", {}).get("Code") not in (
            "BucketAlreadyOwnedByYou",
            "BucketAlreadyExists",
        ):
            raise


def upload(src: pathlib.Path, dest: str, delete: bool) -> int:
    bucket, prefix = split(dest)
    files = sorted(p for p in src.rglob("*") if p.is_file())
    if not files:
        raise ValueError(f"{src}: no files to upload")
    s3 = client()
    ensure_bucket(s3, bucket)
    keys = set()
    for path in files:
        key = prefix + path.relative_to(src).as_posix()
        s3.upload_file(str(path), bucket, key)
        keys.add(key)
        print(f"uploaded s3://{bucket}/{key} ({path.stat().st_size} bytes)")
    if delete:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                if obj["Key"] not in keys:
                    s3.delete_object(Bucket=bucket, Key=obj["Key"])
                    print(f"deleted stale s3://{bucket}/{obj['Key']}")
    return len(files)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--src", required=True, type=pathlib.Path, help="local directory")
    p.add_argument("--dest", required=True, help="s3://bucket/prefix/")
    p.add_argument("--delete", action="store_true", help="remove objects under the prefix not in --src")
    ns = p.parse_args(argv)
    try:
        if not ns.src.is_dir():
            raise ValueError(f"{ns.src}: not a directory")
        split(ns.dest)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        n = upload(ns.src, ns.dest, ns.delete)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (BotoCoreError, ClientError) as err:
        print(f"error: {ns.dest}: {err}", file=sys.stderr)
        return 1
    print(f"{n} file(s) uploaded to {ns.dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
