"""Login and logout with mail credentials (the store's Authenticate), with login penalties."""

from __future__ import annotations

import logging
import secrets

import anyio
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from web.context import current_session, deps, page, peer
from web.sessions import COOKIE, LOGIN_COOKIE, same_token
from web.store_access import AdminError

log = logging.getLogger("mailha.web.login")


def _set_cookie(response: Response, name: str, value: str, max_age: int | None = None) -> None:
    response.set_cookie(name, value, max_age=max_age, path="/", secure=True, httponly=True, samesite="strict")


async def login_form(request: Request) -> Response:
    if current_session(request) is not None:
        return RedirectResponse("/me", status_code=303)
    token = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(32)
    response = page(request, "login.html", None, login_csrf=token)
    _set_cookie(response, LOGIN_COOKIE, token, max_age=3600)
    return response


async def login(request: Request) -> Response:
    d = deps(request)
    form = await request.form()
    user = str(form.get("user", "")).strip()
    password = str(form.get("password", ""))
    who = peer(request)
    if not same_token(str(form.get("csrf", "")), request.cookies.get(LOGIN_COOKIE, "")):
        d.audit.record("-", who, "login", user[:64], "refused: bad CSRF token")
        return RedirectResponse("/login?err=Your+login+form+expired%3A+please+try+again", status_code=303)
    try:
        name = await d.store.call(lambda a: a.authenticate(user, password))
        settings = await d.store.call(lambda a: a.settings(name))
    except AdminError:
        delay = d.limiter.failed(who, user)
        # Like imapd: the user name tried and the peer, never the password.
        log.info("web login failed: user=%s peer=%s delay=%.1fs", user[:64], who, delay)
        d.audit.record("-", who, "login", user[:64], "refused: bad credentials")
        await anyio.sleep(delay)
        return RedirectResponse("/login?err=Login+failed%3A+unknown+user+or+wrong+password", status_code=303)
    d.limiter.succeeded(who, user)
    session = d.sessions.create(name, admin=settings.admin)
    d.audit.record(name, who, "login", name, "ok")
    response = RedirectResponse("/admin" if settings.admin else "/me", status_code=303)
    _set_cookie(response, COOKIE, session.token)
    response.delete_cookie(LOGIN_COOKIE, path="/", secure=True, httponly=True, samesite="strict")
    return response


async def logout(request: Request) -> Response:
    d = deps(request)
    session = current_session(request)
    if session is not None:
        form = await request.form()
        if not same_token(str(form.get("csrf", "")), session.csrf):
            return RedirectResponse("/me?err=Stale+form%3A+reload+the+page", status_code=303)
        d.sessions.end(session.token)
        d.audit.record(session.user, peer(request), "logout", session.user, "ok")
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="strict")
    return response


async def root(request: Request) -> Response:
    session = current_session(request)
    if session is None:
        return RedirectResponse("/login", status_code=303)
    return RedirectResponse("/admin" if session.admin else "/me", status_code=303)


ROUTES = [
    Route("/", root),
    Route("/login", login_form, methods=["GET"]),
    Route("/login", login, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
]
