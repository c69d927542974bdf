"""What every request handler of the web app shares, and the helpers they use
for the session, the CSRF check, the admin check and the audit."""

from __future__ import annotations

import pathlib
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from web.audit import AuditTrail
from web.backup_panel import BackupPanel
from web.login_limiter import WebLoginLimiter
from web.metrics_sampler import MetricsSampler
from web.node_status import NodeStatus
from web.sessions import COOKIE, SessionStore, WebSession, same_token
from web.store_access import AdminError, StoreAccess

HERE = pathlib.Path(__file__).resolve().parent
TEMPLATES = Jinja2Templates(directory=str(HERE / "templates"))


def _utc(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds))


TEMPLATES.env.filters["utc"] = _utc


@dataclass
class WebDeps:
    store: StoreAccess
    sessions: SessionStore
    limiter: WebLoginLimiter
    audit: AuditTrail
    status: NodeStatus
    sampler: MetricsSampler
    backups: BackupPanel


def deps(request: Request) -> WebDeps:
    found: WebDeps = request.app.state.deps
    return found


def peer(request: Request) -> str:
    return request.client.host if request.client else "-"


def current_session(request: Request) -> WebSession | None:
    return deps(request).sessions.get(request.cookies.get(COOKIE))


def require_session(request: Request) -> WebSession:
    session = current_session(request)
    if session is None:
        raise HTTPException(303, headers={"Location": "/login"})
    return session


async def require_admin(request: Request) -> WebSession:
    """The session of a user who holds the admin role now (re-read from the store on every request)."""
    session = require_session(request)
    d = deps(request)
    try:
        settings = await d.store.call(lambda a: a.settings(session.user))
        session.admin = settings.admin
    except AdminError as exc:
        if not exc.unreachable:
            session.admin = False
        # The store is unreachable (a failover in progress): the role checked at login and at the
        # last reachable request stands, so the operator keeps the console while it matters most.
        pass
    if not session.admin:
        d.audit.record(session.user, peer(request), "admin page", request.url.path, "refused: no admin role")
        raise HTTPException(403, "the operators' console needs the admin role")
    return session


async def checked_form(request: Request, session: WebSession) -> dict[str, str]:
    """The POSTed form fields, after the CSRF token check (403 without a matching token)."""
    form = await request.form()
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    if not same_token(fields.get("csrf", ""), session.csrf):
        deps(request).audit.record(session.user, peer(request), "post", request.url.path, "refused: bad CSRF token")
        raise HTTPException(403, "the form's security token is missing or stale: reload the page")
    return fields


def page(request: Request, name: str, session: WebSession | None, **context: Any) -> Response:
    flash = request.query_params.get("msg", "")
    error = request.query_params.get("err", "")
    return TEMPLATES.TemplateResponse(
        request,
        name,
        {"session": session, "flash": flash, "error": error, **context},
    )


def back(path: str, *, msg: str = "", err: str = "") -> RedirectResponse:
    query = urlencode({k: v for k, v in (("msg", msg), ("err", err)) if v})
    return RedirectResponse(f"{path}?{query}" if query else path, status_code=303)
