"""``python -m components.serve``: serve a fareflow model over KServe's v1 and v2 (open inference) protocols.

The model server image's entrypoint; the ServingRuntime ``fareflow-server`` runs it as
``--model_name={{.Name}} --model_dir=/mnt/models --http_port=8080``. Every ``kserve.ModelServer``
flag (``--grpc_port``, ``--enable_grpc``, ``--workers`` ...) is accepted: KServe's own parser is
this one's parent. The model is loaded before the server starts, so a missing or invalid model
directory is one line on stderr and exit status 2, never a server that is up but not ready.
"""

from __future__ import annotations

import argparse
import sys

from components.common.errors import cli_entry


def build_parser() -> argparse.ArgumentParser:
    from kserve.model_server import parser as kserve_parser  # --http_port, --grpc_port, --model_name ...

    p = argparse.ArgumentParser(
        prog="python -m components.serve",
        description="Serve a fareflow fare model with KServe (v1 and v2 open inference protocol).",
        parents=[kserve_parser],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--model_dir",
        required=True,
        help="the model directory (model.json + model.pt): a local path, or s3://bucket/prefix "
        "(copied under /tmp; endpoint and credentials from the AWS_* environment variables)",
    )
    return p


def _main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import kserve

    from .server import FareModel

    model = FareModel(args.model_name, args.model_dir)
    model.load()  # UserError (missing/invalid model dir) -> one line, exit 2, before any port is opened
    server = kserve.ModelServer(
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
    server.start([model])
    return 0


main = cli_entry(_main)

if __name__ == "__main__":
    sys.exit(main())
