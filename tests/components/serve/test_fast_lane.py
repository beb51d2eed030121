"""components.serve.fast_lane in-process: what takes the lane, and errors answered as the app would."""

from __future__ import annotations

import asyncio

import pytest
from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.responses import JSONResponse, PlainTextResponse

from components.serve import fast_lane


class Refused(Exception):
    pass


def _app() -> FastAPI:
    app = FastAPI()

    @app.get("/other")
    async def other():
        return {"via": "app"}

    async def refused(request, exc):
        return JSONResponse({"error": f"refused: {exc}"}, status_code=400)

    async def not_found(request, exc):
        return JSONResponse({"error": "by status"}, status_code=404)

    async def bug(request, exc):
        return JSONResponse({"error": f"internal error: {exc}"}, status_code=500)

    app.add_exception_handler(Refused, refused)
    app.add_exception_handler(404, not_found)
    app.add_exception_handler(Exception, bug)
    return app


async def _handler(request):
    name = request.path_params["model_name"]
    if name == "refuse":
        raise Refused("no")
    if name == "missing":
        raise HTTPException(404)
    if name == "bug":
        raise ZeroDivisionError("boom")
    if name == "cancel":
        raise asyncio.CancelledError
    return PlainTextResponse(f"lane {name} {(await request.body()).decode()}")


def _call(app, method: str, path: str, body: bytes = b"", root_path: str = "") -> tuple[int, bytes]:
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "path": path,
        "raw_path": path.encode(), "root_path": root_path, "query_string": b"", "headers": [],
        "scheme": "http", "server": ("127.0.0.1", 80), "client": ("127.0.0.1", 1),
    }  # fmt: skip
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


@pytest.fixture
def lane():
    return fast_lane.FastLane(_app(), {"/v1/models/{model_name}:predict": _handler})


def test_a_post_to_a_route_goes_straight_to_its_handler_with_its_path_params(lane):
    assert _call(lane, "POST", "/v1/models/taxi:predict", b"{}") == (200, b"lane taxi {}")
    # one segment per parameter, as Starlette's {name}; the whole path must match
    assert _call(lane, "POST", "/v1/models/a:predict:predict") == (200, b"lane a:predict ")
    assert _call(lane, "POST", "/v1/models/a/b:predict")[0] == 404
    assert _call(lane, "POST", "/v1/models/taxi:predictx")[0] == 404


def test_everything_else_goes_to_the_app(lane):
    assert _call(lane, "GET", "/other") == (200, b'{"via":"app"}')
    # another method on a lane route: the app's routing (here: it has no such route)
    assert _call(lane, "GET", "/v1/models/taxi:predict") == (404, b'{"error":"by status"}')
    # a root path: the app strips it (the lane does not try)
    assert _call(lane, "POST", "/api/v1/models/taxi:predict", root_path="/api")[0] == 404


def test_exceptions_are_answered_by_the_apps_handler_for_them(lane):
    assert _call(lane, "POST", "/v1/models/refuse:predict") == (400, b'{"error":"refused: no"}')
    assert _call(lane, "POST", "/v1/models/missing:predict") == (404, b'{"error":"by status"}')
    assert _call(lane, "POST", "/v1/models/bug:predict") == (500, b'{"error":"internal error: boom"}')
    with pytest.raises(asyncio.CancelledError):  # not an Exception: no handler answers it
        _call(lane, "POST", "/v1/models/cancel:predict")


def test_the_lane_is_used_only_with_nothing_but_fastapi_in_front():
    assert fast_lane.usable(_app())
    with_middleware = FastAPI(middleware=[Middleware(fast_lane.FastLane, routes={})])
    assert not fast_lane.usable(with_middleware)
    rooted = _app()
    rooted.root_path = "/api"
    assert not fast_lane.usable(rooted)
