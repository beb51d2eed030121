"""The KServe model server for fareflow: :class:`FareModel` (a ``kserve.Model``) over
:mod:`components.serve.core`, and :class:`FareModelServer` (a ``kserve.ModelServer``).

KServe 0.21 serves the routes (health, metadata, ``/metrics``, gRPC ``ModelInfer``) and runs
every prediction through ``kserve.Model.__call__`` (its Prometheus latency histograms and
latency log). Through KServe's extension points -- routes and exception handlers on its FastAPI
app, a ``RESTServer``/``GRPCServer`` subclass, a gRPC interceptor -- this module changes what a
client's mistake gets:

- ``POST /v1/models/NAME:predict`` and ``POST /v2/models/NAME/infer`` are fareflow routes ahead of
  KServe's: the body is read with a size limit (413) and a read timeout (a Content-Length longer
  than the body is a 400, not a hung connection), decoded by :mod:`components.serve.protocol`
  (strict JSON, the binary tensor extension checked byte for byte) and any other method is 405;
- every 4xx is ``{"error": "..."}`` naming the field and what was expected (FastAPI's
  ``detail`` lists, Starlette's ``{"detail": "Not Found"}`` and exception class names are
  replaced), logged as one line at INFO, never a traceback;
- gRPC answers the same messages (INVALID_ARGUMENT) and refuses an oversized request with the
  REST limit's message (RESOURCE_EXHAUSTED);
- the listen address (``--host``) is chosen, both ports are bound before the server starts (a
  port in use is one line and exit 2), and request logging can be turned off.

This is the only module that imports kserve.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
import uuid
from concurrent import futures
from http import HTTPStatus

import orjson
from fastapi.exceptions import RequestValidationError
from kserve import Model, ModelServer
from kserve.errors import InvalidInput, ModelNotFound, ModelNotReady
from kserve.logging import logger
from kserve.protocol.grpc.interceptors import ExceptionToStatusInterceptor
from kserve.protocol.grpc.server import GRPCServer
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse
from kserve.protocol.rest.server import RESTServer
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response

from components.common import features, model_dir
from components.common.errors import UserError

from . import protocol
from .core import DEFAULT_AREA_MARGIN_DEG, DEFAULT_YEAR_MARGIN, FIELD_NAMES, FarePredictor, limit_threads

OUTPUT_NAME = protocol.OUTPUT_NAME
OUTPUT_DATATYPE = protocol.OUTPUT_DATATYPE
MAX_REQUEST_BYTES = 32 << 20  # REST body and gRPC message: 100,000 v1 trips are about 19 MB of JSON
BODY_TIMEOUT_S = 10.0  # the whole body must arrive within this after the headers
# Requests up to this many trips run on the event loop (a thread hop costs more than their
# forward pass); bigger ones in a worker thread, so health probes are answered meanwhile.
INLINE_ROWS = 256
JSON = "application/json"
# Every method reaches the fareflow routes, so a GET on :predict is a 405 from them, not a 404 from
# KServe's GET /v1/models/{name} route reading "taxi-fare:predict" as a model name.
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def limit_message(size: int, limit: int) -> str:
    """The one message for an oversized request, REST or gRPC."""
    return (
        f"request of {size} bytes exceeds the limit of {limit} bytes (--max-request-bytes); split the batch"
    )


class FareModel(Model):
    """A fareflow fare model served under ``name`` (the InferenceService name)."""

    def __init__(
        self,
        name: str,
        model_dir: str,
        *,
        area_margin_deg: float = DEFAULT_AREA_MARGIN_DEG,
        year_margin: int = DEFAULT_YEAR_MARGIN,
        torch_threads: int | None = None,
    ) -> None:
        super().__init__(name)
        self.torch_threads = torch_threads
        self.model_dir = model_dir
        self.area_margin_deg = area_margin_deg
        self.year_margin = year_margin
        self.predictor: FarePredictor | None = None

    @property
    def version(self) -> str | None:
        """The loaded model's ``model_version`` (None before loading, or for a model without one)."""
        return model_dir.model_version(self.predictor.model.meta) if self.predictor else None

    def load(self) -> bool:
        """Read the model directory (local, or ``s3://`` copied under /tmp); ``UserError`` if unusable."""
        self.predictor = FarePredictor.load(
            self.model_dir, area_margin_deg=self.area_margin_deg, year_margin=self.year_margin
        )
        threads = limit_threads(self.torch_threads)
        area = self.predictor.area
        logger.info(
            "model %s: %s (version %s); serves %s (from %s); %d torch thread(s)",
            self.name,
            self.model_dir,
            self.version or "unversioned",
            area.describe(),
            area.source,
            threads,
        )
        self.ready = True
        return self.ready

    def get_input_types(self) -> list[dict]:
        return [
            {"name": name, "datatype": "BYTES" if name == features.REQUEST_TIME else "FP64", "shape": [-1]}
            for name in FIELD_NAMES
        ]

    def get_output_types(self) -> list[dict]:
        return [{"name": OUTPUT_NAME, "datatype": OUTPUT_DATATYPE, "shape": [-1]}]

    async def predict(self, payload, headers=None, response_headers=None):
        """v1 instances (a list) -> ``{"predictions": [...]}``; a REST :class:`protocol.V2Request`
        -> the fares (a list); a gRPC ``InferRequest`` -> an ``InferResponse``."""
        if self.predictor is None:  # load() not called (kserve routes requests to ready models only)
            raise ModelNotReady(self.name)
        try:
            if isinstance(payload, InferRequest):
                tensors = [_tensor_of(t) for t in payload.inputs]
                fares = await self._run(self._fares_v2, tensors, _rows(tensors))
                return self._infer_response(payload, fares)
            if isinstance(payload, protocol.V2Request):
                return await self._run(self._fares_v2, payload.inputs, _rows(payload.inputs))
            rows = len(payload) if isinstance(payload, list) else 0
            return {"predictions": await self._run(self.predictor.predict_records, payload, rows)}
        except UserError as err:
            raise InvalidInput(str(err)) from None

    @staticmethod
    async def _run(fn, arg, rows: int):
        if rows <= INLINE_ROWS:
            return fn(arg)
        return await asyncio.to_thread(fn, arg)

    def _fares_v2(self, tensors: list[protocol.Tensor]) -> list[float]:
        return self.predictor.predict_columns(protocol.columns_from_tensors(tensors)).tolist()

    def _infer_response(self, request: InferRequest, fares: list[float]) -> InferResponse:
        for out in request.request_outputs or []:
            if out.name != OUTPUT_NAME:
                raise InvalidInput(f"unknown output {out.name!r}; this model answers {OUTPUT_NAME!r}")
        # A list, not an ndarray: kserve 0.21's InferResponse.to_grpc tests `infer_output.data` for
        # truth when the request came as raw (binary) gRPC tensors, which fails for arrays of n > 1.
        output = InferOutput(name=OUTPUT_NAME, shape=[len(fares)], datatype=OUTPUT_DATATYPE, data=fares)
        return InferResponse(
            response_id=request.id or str(uuid.uuid4()),  # the v2 response needs an id
            model_name=self.name,
            infer_outputs=[output],
            use_binary_outputs=request.use_binary_outputs,
            requested_outputs=request.request_outputs,
        )


def _rows(tensors: list[protocol.Tensor]) -> int:
    return max((t.shape[0] for t in tensors if t.shape and isinstance(t.shape[0], int)), default=0)


def _tensor_of(tensor) -> protocol.Tensor:
    """A KServe ``InferInput`` (from gRPC: contents or raw_input_contents) as a protocol tensor."""
    raw = getattr(tensor, "_raw_data", None)  # set by InferRequest for raw_input_contents
    data = None if raw is not None else tensor.data
    if raw is None and not isinstance(data, list):
        data = list(data) if data is not None else []
    return protocol.Tensor(tensor.name, tensor.datatype, list(tensor.shape), data=data, raw=raw)


# --- REST ------------------------------------------------------------------------------------


class RequestRefused(Exception):
    """A request answered with a 4xx before it reached the model (body, method, route)."""

    def __init__(self, status: int, message: str, headers: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def error_response(status: int, message: str, headers: dict | None = None) -> Response:
    return Response(orjson.dumps({"error": message}), status_code=status, headers=headers, media_type=JSON)


class FareRESTServer(RESTServer):
    """KServe's REST server with fareflow's predict/infer routes and error answers in front."""

    def __init__(
        self,
        *args,
        models: dict[str, FareModel],
        sockets: list[socket.socket],
        max_request_bytes: int,
        body_timeout_s: float,
        request_logging: bool,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.models = models
        self.sockets = sockets
        self.max_request_bytes = max_request_bytes
        self.body_timeout_s = body_timeout_s
        self.request_logging = request_logging

    # KServe calls these three from create_application, in this order.
    def _add_middlewares(self, app) -> None:
        if self.request_logging:  # KServe's per-request timing line and the access log
            super()._add_middlewares(app)
        else:
            access = logging.getLogger("uvicorn.access")
            access.handlers, access.propagate = [], False  # uvicorn logs only to a handled logger

    def _register_endpoints(self, app) -> None:
        # Ahead of KServe's routes: Starlette answers with the first route that matches.
        app.add_route("/v1/models/{model_name}:predict", self.v1_predict, methods=ALL_METHODS)
        app.add_route("/v1/models/{model_name}:explain", self.v1_explain, methods=ALL_METHODS)
        app.add_route("/v2/models/{model_name}/infer", self.v2_infer, methods=ALL_METHODS)
        app.add_route("/v2/models/{model_name}", self.v2_metadata, methods=["GET"])
        app.add_route("/v2/models/{model_name}/versions/{rest:path}", self.v2_versions, methods=ALL_METHODS)
        super()._register_endpoints(app)

    def _add_exception_handlers(self, app) -> None:
        super()._add_exception_handlers(app)
        app.add_exception_handler(InvalidInput, self._on_error)
        app.add_exception_handler(ModelNotFound, self._on_error)
        app.add_exception_handler(StarletteHTTPException, self._on_error)
        app.add_exception_handler(RequestValidationError, self._on_error)
        app.add_exception_handler(Exception, self._on_bug)

    def start(self):  # KServe's start() without a socket of its own: ours are bound already
        self.create_application()
        logger.info("Starting uvicorn on %s", ", ".join(_address(s) for s in self.sockets))
        return self._server.serve(sockets=self.sockets)

    # --- answers ------------------------------------------------------------------------------

    def _refuse(self, request: Request, status: int, message: str, headers: dict | None = None) -> Response:
        if self.request_logging:
            logger.info("%d %s %s: %s", status, request.method, request.url.path, message)
        return error_response(status, message, headers)

    async def _on_error(self, request: Request, exc: Exception) -> Response:
        if isinstance(exc, InvalidInput | UserError):
            return self._refuse(request, HTTPStatus.BAD_REQUEST, str(exc))
        if isinstance(exc, ModelNotFound):
            return self._refuse(request, HTTPStatus.NOT_FOUND, str(exc))
        if isinstance(exc, RequestValidationError):
            where = "; ".join(
                f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', 'invalid')}"
                for e in exc.errors()[:5]
            )
            return self._refuse(request, HTTPStatus.BAD_REQUEST, f"invalid request: {where}")
        status = exc.status_code
        if status == HTTPStatus.NOT_FOUND:
            message = f"{request.url.path}: no such route (see /v2/models/NAME for the model's inputs)"
        elif status == HTTPStatus.METHOD_NOT_ALLOWED:
            message = f"{request.method} {request.url.path}: method not allowed"
        else:
            message = str(exc.detail)
        return self._refuse(request, status, message, getattr(exc, "headers", None))

    def _unknown_model(self, name: str) -> str:
        return f"model {name} does not exist; this server serves {', '.join(self.models)}"

    async def _on_bug(self, request: Request, exc: Exception) -> Response:
        logger.error("500 %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(
            HTTPStatus.INTERNAL_SERVER_ERROR, f"internal error: {' '.join(str(exc).split())}"
        )

    async def _read_body(self, request: Request) -> bytes:
        limit = self.max_request_bytes
        announced = request.headers.get("content-length")
        if announced is not None and int(announced) > limit:  # uvicorn refuses a non-integer itself
            raise RequestRefused(  # answered unread: the connection cannot carry another request
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                limit_message(int(announced), limit),
                {"connection": "close"},
            )
        chunks, size = [], 0
        try:
            async with asyncio.timeout(self.body_timeout_s):
                while True:
                    message = await request.receive()
                    if message["type"] == "http.disconnect":
                        raise RequestRefused(
                            HTTPStatus.BAD_REQUEST, "client disconnected before the body ended"
                        )
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > limit:
                        raise RequestRefused(
                            HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                            limit_message(size, limit),
                            {"connection": "close"},
                        )
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            expected = f"the {announced} bytes its Content-Length announced" if announced else "its end"
            raise RequestRefused(
                HTTPStatus.BAD_REQUEST,
                f"request body: {size} byte(s) arrived, not {expected}, within {self.body_timeout_s:g} s",
                {"connection": "close"},
            ) from None
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _model(self, request: Request) -> FareModel:
        name = request.path_params["model_name"]
        model = self.models.get(name)
        if model is None:
            raise RequestRefused(HTTPStatus.NOT_FOUND, self._unknown_model(name))
        if not model.ready:
            raise ModelNotReady(name)
        return model

    async def _answer(self, request: Request, handle) -> Response:
        if request.method != "POST":
            return self._refuse(
                request,
                HTTPStatus.METHOD_NOT_ALLOWED,
                f"{request.method} {request.url.path}: method not allowed; send POST with a JSON body",
                {"allow": "POST"},
            )
        try:
            model = self._model(request)
            body = await self._read_body(request)
            return await handle(model, request, body)
        except RequestRefused as err:
            return self._refuse(request, err.status, err.message, err.headers)
        except (UserError, InvalidInput) as err:
            return self._refuse(request, HTTPStatus.BAD_REQUEST, str(err))

    async def v1_predict(self, request: Request) -> Response:
        async def handle(model: FareModel, request: Request, body: bytes) -> Response:
            instances = protocol.parse_v1(body)
            result, _ = await model(instances)  # kserve.Model.__call__: metrics, latency log
            return Response(orjson.dumps(result), media_type=JSON)

        return await self._answer(request, handle)

    async def v2_infer(self, request: Request) -> Response:
        async def handle(model: FareModel, request: Request, body: bytes) -> Response:
            infer = protocol.parse_v2(body, request.headers.get("inference-header-content-length"))
            fares, _ = await model(infer)
            content, headers = protocol.v2_response(
                model.name, infer.id or str(uuid.uuid4()), fares, infer.binary_output
            )
            return Response(
                content, headers=headers, media_type="application/octet-stream" if headers else JSON
            )

        return await self._answer(request, handle)

    async def v1_explain(self, request: Request) -> Response:
        name = request.path_params["model_name"]
        return self._refuse(
            request,
            HTTPStatus.NOT_FOUND,
            f"model {name} has no explainer; POST /v1/models/{name}:predict for fares",
        )

    async def v2_metadata(self, request: Request) -> Response:
        """KServe's v2 model metadata plus ``versions``: the one version served, ``model.json``'s
        ``model_version`` (a digest of the weights), so a client can tell which model answers."""
        try:
            model = self._model(request)
        except RequestRefused as err:
            return self._refuse(request, err.status, err.message, err.headers)
        metadata = await self.dataplane.model_metadata(model.name)
        version = model.version
        return Response(
            orjson.dumps({**metadata, **({"versions": [version]} if version else {})}), media_type=JSON
        )

    async def v2_versions(self, request: Request) -> Response:
        """``/v2/models/NAME/versions/V[/infer|/ready]``: the routes of the unversioned model when V
        is the version served (one version per InferenceService); 404 naming it otherwise."""
        name = request.path_params["model_name"]
        version, _, action = request.path_params["rest"].partition("/")
        model = self.models.get(name)
        if model is None:
            return self._refuse(request, HTTPStatus.NOT_FOUND, self._unknown_model(name))
        served = model.version
        if version != served:
            which = f"serves version {served}" if served else "serves no versioned model"
            message = f"model {name} has no version {version!r}; it {which} (use /v2/models/{name})"
            return self._refuse(request, HTTPStatus.NOT_FOUND, message)
        if action == "infer":
            return await self.v2_infer(request)
        if action == "" and request.method == "GET":
            return await self.v2_metadata(request)
        if action == "ready" and request.method == "GET":
            ready = bool(model.ready)
            return Response(
                orjson.dumps({"name": name, "ready": ready}),
                status_code=200 if ready else 503,
                media_type=JSON,
            )
        return self._refuse(
            request,
            HTTPStatus.NOT_FOUND,
            f"{request.method} {request.url.path}: no such route of model {name}",
        )


def _address(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# --- gRPC ------------------------------------------------------------------------------------


class FareGRPCInterceptor(ExceptionToStatusInterceptor):
    """KServe's exception-to-status mapping with one-line INFO logs for a client's mistake and the
    REST limit (and message) for an oversized request."""

    def __init__(self, max_request_bytes: int, request_logging: bool) -> None:
        super().__init__()
        self.max_request_bytes = max_request_bytes
        self.request_logging = request_logging

    async def intercept(self, method, request_or_iterator, context, method_name):
        byte_size = getattr(request_or_iterator, "ByteSize", None)
        if byte_size is not None:
            size = byte_size()
            if size > self.max_request_bytes:
                message = limit_message(size, self.max_request_bytes)
                self._log(method_name, "RESOURCE_EXHAUSTED", message)
                await context.abort(_grpc().StatusCode.RESOURCE_EXHAUSTED, message)
        return await super().intercept(method, request_or_iterator, context, method_name)

    async def handle_exception(self, ex, request_or_iterator, context, method_name):
        grpc = _grpc()
        if isinstance(ex, InvalidInput | UserError):
            self._log(method_name, "INVALID_ARGUMENT", str(ex))
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(ex))
        elif isinstance(ex, ModelNotFound):
            self._log(method_name, "NOT_FOUND", str(ex))
            await context.abort(grpc.StatusCode.NOT_FOUND, str(ex))
        else:
            await super().handle_exception(ex, request_or_iterator, context, method_name)

    def _log(self, method_name: str, status: str, message: str) -> None:
        if self.request_logging:
            logger.info("%s %s: %s", status, method_name, message)


def _grpc():
    import grpc

    return grpc


class FareGRPCServer(GRPCServer):
    """KServe's gRPC server on a chosen address, without SO_REUSEPORT (so a port in use is an
    error, not a second server sharing it), with :class:`FareGRPCInterceptor`."""

    def __init__(self, *args, address: str, max_request_bytes: int, request_logging: bool, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.address = address
        self.max_request_bytes = max_request_bytes
        self.request_logging = request_logging

    async def start(self, max_workers):
        from grpc import aio
        from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc
        from kserve.protocol.grpc.interceptors import LoggingInterceptor
        from kserve.protocol.grpc.servicer import InferenceServicer

        interceptors = [FareGRPCInterceptor(self.max_request_bytes, self.request_logging)]
        if self.request_logging:
            interceptors.insert(0, LoggingInterceptor())
        self._server = aio.server(
            futures.ThreadPoolExecutor(max_workers=max_workers),
            interceptors=interceptors,
            options=[
                ("grpc.so_reuseport", 0),
                ("grpc.max_send_message_length", self._kwargs.get("grpc_max_send_message_length")),
                # Above the limit, so FareGRPCInterceptor (not the gRPC core) answers up to 4x it.
                ("grpc.max_receive_message_length", 4 * self.max_request_bytes),
            ],
        )
        grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(
            InferenceServicer(self._data_plane, self._model_repository_extension), self._server
        )
        try:
            bound = self._server.add_insecure_port(self.address)
        except RuntimeError:
            bound = 0
        if not bound:
            raise UserError(f"--grpc_port: cannot listen on {self.address} (already in use?)")
        logger.info("Starting gRPC server on %s with %d workers", self.address, max_workers)
        await self._server.start()
        await self._server.wait_for_termination()


# --- the server ------------------------------------------------------------------------------


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
