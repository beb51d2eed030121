"""An ASGI fast lane in front of KServe's FastAPI app for the two prediction routes.

:class:`FastLane` sends a ``POST`` whose path is one of its routes (``/v1/models/NAME:predict``,
``/v2/models/NAME/infer``) straight to the route's handler -- the handler fareflow also registers
on the app -- and everything else to the app. It skips FastAPI's own layers (error middleware,
exception middleware, exit stack, the router's walk over every route) and what they do for these routes: an exception the handler raises is answered by the app's own
exception handler for its class, looked up as Starlette does. It is used only where the app
has nothing else in front of those routes (:func:`usable`: no added middleware -- KServe's
timing and access-log middleware come with request logging --, no root path, no body limit, no
FastAPI telemetry), so both ways answer alike. See docs/serve.md ("How it plugs into KServe").
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

Handler = Callable[[Request], Awaitable[Response]]


def path_pattern(template: str) -> re.Pattern:
    """A Starlette path template's regular expression: ``{name}`` matches one path segment."""
    return re.compile(re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template)))


def usable(app) -> bool:
    """Whether nothing but FastAPI's own layers stands between the server and ``app``'s routes."""
    telemetry = getattr(app, "_native_telemetry", None)
    return (
        not app.user_middleware
        and not app.root_path
        and getattr(app, "max_body_size", None) is None
        and not (telemetry is not None and telemetry.enabled())
    )


class FastLane:
    """``POST`` to one of ``routes`` (template -> handler) straight to its handler; the rest to ``app``."""

    def __init__(self, app, routes: dict[str, Handler]) -> None:
        self.app = app
        self.routes = [(path_pattern(template), handler) for template, handler in routes.items()]

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            path = scope["path"]
            for pattern, handler in self.routes:
                found = pattern.fullmatch(path)
                if found is not None:
                    scope["app"] = self.app
                    scope["path_params"] = found.groupdict()
                    request = Request(scope, receive, send)
                    try:
                        response = await handler(request)
                    except Exception as exc:  # noqa: BLE001 - answered by the app's handler for it
                        response = await self._answer_error(request, exc)
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)

    async def _answer_error(self, request: Request, exc: Exception) -> Response:
        """The app's exception handler for ``exc`` (by status code for an ``HTTPException``, else
        the nearest class in its MRO), as Starlette's exception middleware looks it up."""
        handlers = self.app.exception_handlers
        handler = handlers.get(exc.status_code) if isinstance(exc, HTTPException) else None
        if handler is None:
            handler = next((handlers[cls] for cls in type(exc).__mro__ if cls in handlers), None)
        if handler is None:
            raise exc
        response = handler(request, exc)
        return await response if inspect.isawaitable(response) else response
