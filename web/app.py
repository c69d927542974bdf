"""The web application: routes, static files, security headers, and the sampler's lifetime."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from web import routes_admin, routes_auth, routes_user
from web.context import HERE, WebDeps, current_session, page

# Everything from this origin only: no inline script, no third-party asset.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "Strict-Transport-Security": "max-age=31536000",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


class SecurityHeaders:
    """Adds SECURITY_HEADERS to every HTTP response (pure ASGI: streams pass through)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                extra = [
                    (k.lower().encode(), v.encode())
                    for k, v in SECURITY_HEADERS.items()
                    if k.lower().encode() not in present
                ]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code in (301, 302, 303) and exc.headers:
        return Response(status_code=exc.status_code, headers=exc.headers)
    response = page(request, "error.html", current_session(request), status=exc.status_code, detail=exc.detail)
    response.status_code = exc.status_code
    return response


def create_app(deps: WebDeps, *, sample: bool = True) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with anyio.create_task_group() as tg:
            if sample:
                tg.start_soon(deps.sampler.run)
            yield
            tg.cancel_scope.cancel()
        deps.store.close()

    app = Starlette(
        routes=[
            *routes_auth.ROUTES,
            *routes_user.ROUTES,
            *routes_admin.ROUTES,
            Mount("/static", app=StaticFiles(directory=str(HERE / "static")), name="static"),
        ],
        exception_handlers={HTTPException: _http_error},
        middleware=[Middleware(SecurityHeaders)],
        lifespan=lifespan,
    )
    app.state.deps = deps

    return app
