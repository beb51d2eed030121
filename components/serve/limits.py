"""The request limits both protocols share, and the one message for an oversized request.

No KServe import: ``python -m components.serve`` reads the defaults for its flags from here
before the (slow) server import. See docs/serve.md ("Errors").
"""

from __future__ import annotations

MAX_REQUEST_BYTES = 32 << 20  # REST body and gRPC message: 100,000 v1 trips are about 19 MB of JSON
BODY_TIMEOUT_S = 10.0  # the whole body must arrive within this after the headers


def limit_message(size: int, limit: int) -> str:
    """The one message for an oversized request, REST or gRPC."""
    return (
        f"request of {size} bytes exceeds the limit of {limit} bytes (--max-request-bytes); split the batch"
    )
