"""Storage I/O by URI in one import: the public names of the modules it is split into.

- :mod:`.filesystem`: ``is_s3``/``is_http``, the S3 settings from the AWS environment variables,
  ``resolve_filesystem`` (local path or ``s3://`` to a pyarrow filesystem) and ``read_json``;
- :mod:`.s3`: the boto3 client, one-line S3 errors, listing, ranged reads;
- :mod:`.http_source`: http(s) GETs with retries;
- :mod:`.sources`: ``text_sources``, the ``.txt`` files (and zip members) a source URI names;
- :mod:`.markers`: ``_SUCCESS``/``_INCOMPLETE`` and the step-agnostic completion check (the
  step-named protocol that writes them: :mod:`.staged`).

New code may import from those modules directly; this one keeps the older imports working.
"""

from __future__ import annotations

from .filesystem import (
    is_http,
    is_s3,
    read_json,
    resolve_filesystem,
    s3_endpoint,
    s3_filesystem,
    s3_region,
    split_s3,
)
from .markers import (
    INCOMPLETE_MARKER,
    SUCCESS_MARKER,
    not_complete,
    output_is_complete,
    require_complete,
)
from .s3 import S3RangeReader, s3_client, s3_error, s3_list
from .sources import ARCHIVE_SUFFIX, TEXT_SUFFIX, TextSource, has_glob, text_sources

__all__ = [
    "ARCHIVE_SUFFIX",
    "INCOMPLETE_MARKER",
    "SUCCESS_MARKER",
    "TEXT_SUFFIX",
    "S3RangeReader",
    "TextSource",
    "has_glob",
    "is_http",
    "is_s3",
    "not_complete",
    "output_is_complete",
    "read_json",
    "require_complete",
    "resolve_filesystem",
    "s3_client",
    "s3_endpoint",
    "s3_error",
    "s3_filesystem",
    "s3_list",
    "s3_region",
    "split_s3",
    "text_sources",
]
