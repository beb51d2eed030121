#!/usr/bin/env python3
"""Make a model that reads as a model but cannot load (the canary step of ``kind-test.sh``).

    unloadable_model.py --from s3://bucket/stable-model/ --to s3://bucket/broken-model/

Copies only ``model.json`` from ``--from`` to ``--to`` and removes every other object under
``--to`` (left from an earlier run): the copy names the model's version, so a rollout reads
it like any candidate, but it has no weights, so the model server's load fails, the canary
never gets ready and is rolled back. Endpoint, region and credentials come from the AWS
environment variables, as in ``upload_data.py``. Exit status: 0 written, 1 on an S3 error
(``--from`` has no model.json included), 2 on bad input.
"""

from __future__ import annotations

import argparse
import sys

from upload_data import client, split

META_FILE = "model.json"


def make(src: str, dest: str) -> str:
    src_bucket, src_prefix = split(src)
    bucket, prefix = split(dest)
    if (src_bucket, src_prefix) == (bucket, prefix):
        raise ValueError(f"{dest}: the same prefix as --from (it would remove the model's weights)")
    s3 = client()
    key = prefix + META_FILE
    s3.copy_object(Bucket=bucket, Key=key, CopySource={"Bucket": src_bucket, "Key": src_prefix + META_FILE})
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            if obj["Key"] != key:
                s3.delete_object(Bucket=bucket, Key=obj["Key"])
    return f"s3://{bucket}/{key}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--from", dest="src", required=True, help="s3://bucket/prefix/ of a model directory")
    p.add_argument("--to", dest="dest", required=True, help="s3://bucket/prefix/ to write the copy to")
    ns = p.parse_args(argv)
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        written = make(ns.src, ns.dest)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (BotoCoreError, ClientError) as err:
        print(f"error: {ns.src}{META_FILE} -> {ns.dest}: {err}", file=sys.stderr)
        return 1
    print(f"wrote {written} (copied from {ns.src.rstrip('/')}/{META_FILE}; no weights)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
