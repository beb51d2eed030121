"""``python -m components.serve``: serve a fareflow model over KServe's v1 and v2 (open inference) protocols.

The model server image's entrypoint; the ServingRuntime ``fareflow-server`` runs it as
``--model_name={{.Name}} --model_dir=/mnt/models --http_port=8080``. Every ``kserve.ModelServer``
flag (``--grpc_port``, ``--enable_grpc`` ...) is accepted -- KServe's own parser is this one's
parent -- and every flag also in its hyphenated spelling (``--model-dir``, ``--http-port``).
The model is loaded and both ports are bound before the server starts, so a missing, corrupt or
foreign model directory, or a port in use, is one line on stderr and exit status 2, never a
server that is up but not ready.
"""

from __future__ import annotations

import argparse
import sys

from components.common.errors import UserError, cli_entry

from .domain import DEFAULT_AREA_MARGIN_DEG, DEFAULT_YEAR_MARGIN
from .limits import BODY_TIMEOUT_S, MAX_REQUEST_BYTES


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def build_parser() -> argparse.ArgumentParser:
    from kserve.model_server import parser as kserve_parser  # --http_port, --grpc_port, --model_name ...

    p = argparse.ArgumentParser(
        prog="fareflow serve",
        description="Serve a fareflow fare model with KServe (v1 and v2 open inference protocol). "
        "Every flag may be spelled with hyphens or underscores (--model-dir, --model_dir).",
        parents=[kserve_parser],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--model_dir",
        "--model-dir",
        dest="model_dir",
        required=True,
        help="the model directory (model.json + model.npz/model.pt): a local path, or s3://bucket/prefix "
        "(copied under /tmp; endpoint and credentials from the AWS_* environment variables)",
    )
    p.add_argument(
        "--host",
        default=None,
        help="listen address of both servers (default: KServe's, 0.0.0.0 for HTTP and [::] for gRPC)",
    )
    p.add_argument(
        "--area-margin-deg",
        type=float,
        default=DEFAULT_AREA_MARGIN_DEG,
        help="degrees added around the training extent (model.json) to make the service area; "
        "a trip outside it is refused with 400",
    )
    p.add_argument(
        "--year-margin",
        type=int,
        default=DEFAULT_YEAR_MARGIN,
        help="years before and after the training years the model still prices",
    )
    p.add_argument(
        "--max-request-bytes",
        type=int,
        default=MAX_REQUEST_BYTES,
        help="largest REST body and gRPC message (413 / RESOURCE_EXHAUSTED above it)",
    )
    p.add_argument(
        "--body-timeout-s",
        type=float,
        default=BODY_TIMEOUT_S,
        help="seconds a request body may take to arrive (a body shorter than its Content-Length "
        "is answered 400 after this)",
    )
    p.add_argument(
        "--torch-threads",
        type=int,
        default=None,
        help="torch intra-op threads (default: the container's CPU limit, else the machine's cores)",
    )
    p.add_argument(
        "--request-logging",
        type=_bool,
        default=True,
        help="log a line per request (access log, latency, refused requests); false under heavy load",
    )
    return p


def normalize_flags(argv: list[str], parser: argparse.ArgumentParser) -> list[str]:
    """``--http-port 9000`` -> ``--http_port 9000`` for every flag the parser knows underscored
    (KServe spells its flags so); values and unknown flags are left alone."""
    known = {s for action in parser._actions for s in action.option_strings}
    out = []
    for arg in argv:
        if arg == "--":
            out.extend(argv[len(out) :])
            break
        if arg.startswith("--") and "-" in arg[2:]:
            name, sep, value = arg.partition("=")
            alias = "--" + name[2:].replace("-", "_")
            if name not in known and alias in known:
                arg = alias + sep + value
        out.append(arg)
    return out


def _main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(normalize_flags(sys.argv[1:] if argv is None else list(argv), parser))
    if args.max_request_bytes < 1:
        raise UserError(f"--max-request-bytes: expected a positive integer, got {args.max_request_bytes}")
    if not args.body_timeout_s > 0:
        raise UserError(f"--body-timeout-s: expected a positive number, got {args.body_timeout_s}")

    from .server import FareModel, FareModelServer

    if args.torch_threads is not None and args.torch_threads < 1:
        raise UserError(f"--torch-threads: expected a positive integer, got {args.torch_threads}")
    model = FareModel(
        args.model_name,
        args.model_dir,
        area_margin_deg=args.area_margin_deg,
        year_margin=args.year_margin,
        torch_threads=args.torch_threads,
    )
    model.load()  # UserError (missing/corrupt/foreign model dir) -> one line, exit 2, before any port opens
    server = FareModelServer(
        host=args.host,
        max_request_bytes=args.max_request_bytes,
        body_timeout_s=args.body_timeout_s,
        request_logging=args.request_logging,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        workers=args.workers,
        max_threads=args.max_threads,
        max_asyncio_workers=args.max_asyncio_workers,
        enable_grpc=args.enable_grpc,
        enable_docs_url=args.enable_docs_url,
        enable_latency_logging=args.enable_latency_logging,
        access_log_format=args.access_log_format,
        event_loop=args.event_loop,
        timeout_keep_alive=args.timeout_keep_alive,
        ssl_certfile=args.ssl_certfile,
        ssl_keyfile=args.ssl_keyfile,
    )
    server.start([model])  # UserError (a port in use, --workers > 1) -> one line, exit 2
    return 0


main = cli_entry(_main, prog="fareflow serve")

if __name__ == "__main__":
    sys.exit(main())
