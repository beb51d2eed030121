"""The KServe model server for fareflow: :class:`FareModelServer` (a ``kserve.ModelServer``).

It binds both ports before anything starts (:func:`bind_socket`: a port in use, or a ``--host``
that is not an address, is one line and exit 2), refuses ``--workers`` above 1, serves
:class:`~.rest.FareRESTServer` and :class:`~.grpc_server.FareGRPCServer` on the event loop
``--event-loop`` names, and freezes what start-up loaded out of the garbage collector's sight.
The pieces: :mod:`.model` (the ``kserve.Model``), :mod:`.rest`, :mod:`.grpc_server`; their
public names are importable from here as well. See docs/serve.md ("How it plugs into KServe").
"""

from __future__ import annotations

import asyncio
import gc
import socket

from kserve import ModelServer
from kserve.logging import logger

from components.common.errors import UserError

from .grpc_server import FareGRPCInterceptor, FareGRPCServer  # noqa: F401 - re-exported
from .limits import BODY_TIMEOUT_S, MAX_REQUEST_BYTES, limit_message  # noqa: F401 - re-exported
from .model import INLINE_ROWS, OUTPUT_DATATYPE, OUTPUT_NAME, FareModel  # noqa: F401 - re-exported
from .rest import FareRESTServer, RequestRefused, error_response  # noqa: F401 - re-exported


def bind_socket(host: str, port: int, flag: str) -> socket.socket:
    """A listening TCP socket on ``host:port`` (what uvicorn would bind), or a one-line ``UserError``."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except (socket.gaierror, UnicodeError) as err:
        raise UserError(f"--host {host}: not an address to listen on ({err})") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(2048)
    except OSError as err:
        sock.close()
        raise UserError(f"{flag} {port}: cannot listen on {host}:{port}: {err.strerror or err}") from None
    sock.set_inheritable(True)
    return sock


def grpc_address(host: str | None, port: int) -> str:
    if host is None:
        return f"[::]:{port}"  # KServe's
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def event_loop_factory(name: str):
    """The event loop ``--event-loop`` names: ``uvloop``, ``asyncio``, or ``auto`` (uvloop where it
    is installed -- it is with kserve's uvicorn[standard] -- else asyncio), as uvicorn chooses."""
    if name in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if name == "uvloop":
                raise UserError("--event-loop uvloop: uvloop is not installed") from None
        else:
            return uvloop.new_event_loop
    return asyncio.new_event_loop


class FareModelServer(ModelServer):
    """``kserve.ModelServer`` with :class:`FareRESTServer`, :class:`FareGRPCServer` and ``--host``."""

    def __init__(
        self,
        *,
        host: str | None = None,
        max_request_bytes: int = MAX_REQUEST_BYTES,
        body_timeout_s: float = BODY_TIMEOUT_S,
        request_logging: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.host = host
        self.max_request_bytes = max_request_bytes
        self.body_timeout_s = body_timeout_s
        self.request_logging = request_logging
        if not request_logging:
            self.enable_latency_logging = False

    def start(self, models: list[FareModel]) -> None:
        if self.workers != 1:
            raise UserError(
                f"--workers {self.workers}: the fareflow server runs one process; scale with replicas "
                "(the InferenceService's minReplicas/maxReplicas)"
            )
        http_socket = bind_socket(self.host or "0.0.0.0", self.http_port, "--http_port")  # KServe's default
        if self.enable_grpc:  # fail before anything starts, not after the REST server is up
            bind_socket(self.host or "::", self.grpc_port, "--grpc_port").close()
        self._register_and_check_atleast_one_model_is_ready(models)
        from kserve.constants.constants import FASTAPI_APP_IMPORT_STRING
        from kserve.model_server import args as kserve_args

        self._rest_server = FareRESTServer(
            FASTAPI_APP_IMPORT_STRING,
            self.dataplane,
            self.model_repository_extension,
            self.http_port,
            access_log_format=self.access_log_format,
            grace_period=self.grace_period,
            event_loop=self.event_loop,
            timeout_keep_alive=self.timeout_keep_alive,
            ssl_certfile=self.ssl_certfile,
            ssl_keyfile=self.ssl_keyfile,
            models={m.name: m for m in models},
            sockets=[http_socket],
            max_request_bytes=self.max_request_bytes,
            body_timeout_s=self.body_timeout_s,
            request_logging=self.request_logging,
        )
        self.servers.append(self._rest_server.start())
        if self.enable_grpc:
            self._grpc_server = FareGRPCServer(
                self.grpc_port,
                self.dataplane,
                self.model_repository_extension,
                kwargs=vars(kserve_args),
                grace_period=self.grace_period,
                address=grpc_address(self.host, self.grpc_port),
                max_request_bytes=self.max_request_bytes,
                request_logging=self.request_logging,
            )
            self.servers.append(self._grpc_server.start(self.max_threads))
        # What is loaded by now (kserve, FastAPI, the model) lives as long as the server: frozen out
        # of the collector's sight, a full collection scans only what requests made -- about 6 ms,
        # not 170-290 ms with the event loop stalled (v1's p99 with 100 trips at 64 connections
        # was 0.5-0.9 s in the rounds that had one).
        gc.freeze()
        logger.info("gc: %d objects loaded at start-up frozen", gc.get_freeze_count())
        # KServe's start() runs asyncio.run(), which takes the stdlib loop whatever --event-loop says
        # (uvicorn chooses the loop only in its own run()) and configures another loop than the one
        # it runs; here the loop --event-loop names (auto: uvloop where installed, as uvicorn does)
        # is the one configured and run.
        with asyncio.Runner(loop_factory=event_loop_factory(self.event_loop)) as runner:
            loop = runner.get_loop()
            asyncio.set_event_loop(loop)
            logger.info("Event loop: %s.%s", type(loop).__module__, type(loop).__qualname__)
            self.setup_event_loop()
            self.register_signal_handler()
            runner.run(self._serve())
