"""fareflow's REST routes on KServe's FastAPI app: :class:`FareRESTServer` (a ``RESTServer``).

``POST /v1/models/NAME:predict`` and ``POST /v2/models/NAME/infer`` (also under
``/versions/V``) are served ahead of KServe's routes: the body is read with a size limit (413)
and a read timeout (a Content-Length longer than the body is a 400, not a hung connection),
decoded by :mod:`.protocol` (strict JSON, the v2 binary tensor extension checked byte for
byte), and any other method is 405. Every 4xx is ``{"error": "..."}``, logged as one line at
INFO (never a traceback); request logging can be turned off. See docs/serve.md.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import uuid
from http import HTTPStatus

import orjson
from fastapi.exceptions import RequestValidationError
from kserve.errors import InvalidInput, ModelNotFound, ModelNotReady
from kserve.logging import logger
from kserve.protocol.rest.server import RESTServer
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response

from components.common.errors import UserError

from . import fast_lane, protocol
from .limits import limit_message
from .model import FareModel

JSON = "application/json"
# Every method reaches the fareflow routes, so a GET on :predict is a 405 from them, not a 404 from
# KServe's GET /v1/models/{name} route reading "taxi-fare:predict" as a model name.
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
V1_PREDICT = "/v1/models/{model_name}:predict"
V2_INFER = "/v2/models/{model_name}/infer"


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
        app.add_route(V1_PREDICT, self.v1_predict, methods=ALL_METHODS)
        app.add_route("/v1/models/{model_name}:explain", self.v1_explain, methods=ALL_METHODS)
        app.add_route(V2_INFER, self.v2_infer, methods=ALL_METHODS)
        app.add_route("/v2/models/{model_name}", self.v2_metadata, methods=["GET"])
        app.add_route("/v2/models/{model_name}/versions/{rest:path}", self.v2_versions, methods=ALL_METHODS)
        super()._register_endpoints(app)

    def _add_exception_handlers(self, app) -> None:
        self.app = app  # KServe's create_application keeps no reference to it
        super()._add_exception_handlers(app)
        app.add_exception_handler(InvalidInput, self._on_error)
        app.add_exception_handler(ModelNotFound, self._on_error)
        app.add_exception_handler(StarletteHTTPException, self._on_error)
        app.add_exception_handler(RequestValidationError, self._on_error)
        app.add_exception_handler(Exception, self._on_bug)

    def start(self):  # KServe's start() without a socket of its own: ours are bound already
        self.create_application()
        if fast_lane.usable(self.app):  # the prediction routes straight to their handlers
            self.config.app = fast_lane.FastLane(
                self.app, {V1_PREDICT: self.v1_predict, V2_INFER: self.v2_infer}
            )
            logger.info("REST: %s and %s take the fast lane", V1_PREDICT, V2_INFER)
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
