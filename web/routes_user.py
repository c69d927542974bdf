"""The users' page: quota, password, forwarding, blocked sender domains, spam action, own delivery log."""

from __future__ import annotations

import logging
from collections.abc import Callable

import anyio
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mailha_api import settings_pb2
from web.context import back, checked_form, deps, page, peer, require_session
from web.store_access import AdminError

log = logging.getLogger("mailha.web.user")
MIN_PASSWORD = 8
SPAM_ACTIONS = {
    "junk": settings_pb2.SPAM_TO_JUNK,
    "inbox": settings_pb2.SPAM_TO_INBOX,
    "discard": settings_pb2.SPAM_DISCARD,
}
# Changes the settings in place from the form; returns a summary for the page and the audit.
SettingsChange = Callable[[settings_pb2.UserSettings, dict[str, str]], str]
BLOCK_ACTIONS = {"junk": settings_pb2.BLOCK_TO_JUNK, "refuse": settings_pb2.BLOCK_REFUSE}


def quota_view(usage: int, limit: int) -> dict[str, object]:
    percent = 0.0 if not limit else min(100.0, 100.0 * usage / limit)
    return {"usage": usage, "limit": limit, "percent": round(percent, 1)}


async def me(request: Request) -> Response:
    session = require_session(request)
    d = deps(request)
    quota = await d.store.call(lambda a: a.quota(session.user))
    info = await d.store.call(lambda a: a.get_user(session.user))
    settings = await d.store.call(lambda a: a.settings(session.user))
    query = settings_pb2.SearchDeliveriesRequest(user=session.user, limit=50)
    log_rows = await d.store.call(lambda a: a.deliveries(query))
    return page(
        request,
        "me.html",
        session,
        quota=quota_view(quota.usage_bytes, quota.limit_bytes),
        messages=quota.messages,
        addresses=list(info.addresses),
        settings=settings,
        spam_action={v: k for k, v in SPAM_ACTIONS.items()}[settings.spam_action],
        block_action={v: k for k, v in BLOCK_ACTIONS.items()}[settings.block_action],
        deliveries=log_rows,
        max_domains=10,
    )


async def change_password(request: Request) -> Response:
    session = require_session(request)
    d = deps(request)
    form = await checked_form(request, session)
    old, new, again = form.get("old", ""), form.get("new", ""), form.get("again", "")
    if new != again:
        return back("/me", err="The new passwords do not match.")
    if len(new) < MIN_PASSWORD:
        return back("/me", err=f"The new password needs at least {MIN_PASSWORD} characters.")
    try:
        await d.store.call(lambda a: a.authenticate(session.user, old))
    except AdminError:
        delay = d.limiter.failed(peer(request), session.user)
        d.audit.record(session.user, peer(request), "password", session.user, "refused: wrong old password")
        await anyio.sleep(delay)
        return back("/me", err="The current password is wrong.")
    await d.store.call(lambda a: a.set_password(session.user, new))
    d.audit.record(session.user, peer(request), "password", session.user, "ok")
    return back("/me", msg="Password changed: use the new one in your mail program now.")


async def _update(request: Request, action: str, change: SettingsChange) -> Response:
    session = require_session(request)
    d = deps(request)
    form = await checked_form(request, session)
    settings = await d.store.call(lambda a: a.settings(session.user))
    try:
        summary = change(settings, form)
        await d.store.call(lambda a: a.put_settings(settings))
    except (AdminError, ValueError) as exc:
        d.audit.record(session.user, peer(request), action, session.user, f"refused: {exc}")
        return back("/me", err=str(exc))
    d.audit.record(session.user, peer(request), action, session.user, f"ok: {summary}")
    return back("/me", msg=f"Saved: {summary}.")


def _forwarding(settings: settings_pb2.UserSettings, form: dict[str, str]) -> str:
    settings.forward_to = form.get("forward_to", "").strip()
    settings.forward_keep_copy = form.get("keep_copy") == "on"
    if not settings.forward_to:
        return "forwarding off"
    return f"forwarding to {settings.forward_to}" + (", keeping a copy" if settings.forward_keep_copy else "")


def _block_add(settings: settings_pb2.UserSettings, form: dict[str, str]) -> str:
    domain = form.get("domain", "").strip().lower()
    if not domain:
        raise ValueError("Enter a domain to block.")
    if domain not in settings.blocked_domains:
        settings.blocked_domains.append(domain)
    return f"blocking {domain}"


def _block_remove(settings: settings_pb2.UserSettings, form: dict[str, str]) -> str:
    domain = form.get("domain", "")
    kept = [d for d in settings.blocked_domains if d != domain]
    del settings.blocked_domains[:]
    settings.blocked_domains.extend(kept)
    return f"no longer blocking {domain}"


def _filters(settings: settings_pb2.UserSettings, form: dict[str, str]) -> str:
    spam, block = form.get("spam_action", ""), form.get("block_action", "")
    if spam not in SPAM_ACTIONS or block not in BLOCK_ACTIONS:
        raise ValueError("Choose one of the offered actions.")
    settings.spam_action = SPAM_ACTIONS[spam]
    settings.block_action = BLOCK_ACTIONS[block]
    return f"spam to {spam}, blocked senders: {block}"


async def forwarding(request: Request) -> Response:
    return await _update(request, "forwarding", _forwarding)


async def block_add(request: Request) -> Response:
    return await _update(request, "block domain", _block_add)


async def block_remove(request: Request) -> Response:
    return await _update(request, "unblock domain", _block_remove)


async def filters(request: Request) -> Response:
    return await _update(request, "filters", _filters)


ROUTES = [
    Route("/me", me, methods=["GET"]),
    Route("/me/password", change_password, methods=["POST"]),
    Route("/me/forwarding", forwarding, methods=["POST"]),
    Route("/me/blocked", block_add, methods=["POST"]),
    Route("/me/blocked/remove", block_remove, methods=["POST"]),
    Route("/me/filters", filters, methods=["POST"]),
]
