"""http(s) downloads for the text sources: a streaming GET through urllib3 with retries (TLS
verified with the default trust store, ``SSL_CERT_FILE`` honoured) and one-line errors.
"""

from __future__ import annotations

from .errors import UserError

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


def http_open(uri: str):
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
        raise UserError(f"{uri}: cannot download: {why(reason)}") from None
    except (urllib3.exceptions.HTTPError, OSError) as err:
        raise UserError(f"{uri}: cannot download: {why(err)}") from None
    if response.status >= 400:
        response.release_conn()
        raise UserError(f"{uri}: HTTP {response.status} {response.reason}")
    return response


def why(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}" if text else type(err).__name__
