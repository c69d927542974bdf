"""The operators' console: status (live), failover timeline and actions, graphs, users, delivery log, audit."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from mailha_api import settings_pb2
from web.backup_panel import human_age
from web.context import WebDeps, back, checked_form, deps, page, peer, require_admin
from web.metrics_sampler import Sample
from web.node_status import OPERATOR_NODE
from web.routes_user import MIN_PASSWORD, quota_view
from web.store_access import AdminError
from web.svg_chart import Mark, line_chart, state_lanes

USER_SORTS = ("name", "usage", "percent", "messages")


async def status_page(request: Request) -> Response:
    session = await require_admin(request)
    d = deps(request)
    return page(
        request,
        "admin_status.html",
        session,
        status=await d.status.status(),
        mode=d.status.mode,
        backups=await d.backups.view(),
        human_age=human_age,
    )


async def metrics(request: Request) -> Response:
    """Prometheus scrape, no login (times and a flag, nothing about users): the live age of the
    last backup, which the backup run's own textfile can only give as of when it was written."""
    text = await deps(request).backups.prometheus()
    return PlainTextResponse(text, headers={"Cache-Control": "no-store"}, media_type="text/plain; version=0.0.4")


async def status_json(request: Request) -> Response:
    await require_admin(request)
    return JSONResponse(await deps(request).status.status(), headers={"Cache-Control": "no-store"})


async def timeline(request: Request) -> Response:
    session = await require_admin(request)
    d = deps(request)
    history = await d.status.history()
    status = await d.status.status()
    actions = [e for e in d.audit.recent(200) if e.action in ("switchover", "pause", "resume")]
    transitions = [
        (float(e["time"]), str(e["node"]), str(e["to_state"]), str(e["reason"]))
        for e in history
        if e["node"] != OPERATOR_NODE
    ]
    operator_marks = [
        Mark(float(e["time"]), f"{e['to_state']}: {e['reason']}") for e in history if e["node"] == OPERATOR_NODE
    ]
    nodes = [str(n["name"]) for n in status["nodes"]]
    chart = state_lanes(transitions, nodes, operator_marks) if mode_is_cluster(d) else ""
    return page(
        request,
        "admin_timeline.html",
        session,
        history=history,
        status=status,
        actions=actions,
        mode=d.status.mode,
        chart=chart,
    )


def mode_is_cluster(d: WebDeps) -> bool:
    return d.status.mode == "cluster"


async def _cluster_action(request: Request, action: str) -> Response:
    session = await require_admin(request)
    d = deps(request)
    form = await checked_form(request, session)
    reason = form.get("reason", "").strip()[:200]
    if form.get("confirm") != "yes":
        return back("/admin/timeline", err=f"Tick the confirmation box to {action}.")
    target = form.get("to", "") if action == "switchover" else ""
    requested = f"{action} {target or 'any standby'}" if action == "switchover" else action
    try:
        await d.status.record_operator(session.user, action, f"{requested} requested ({reason or 'no reason given'})")
        if action == "switchover":
            said = await d.status.switchover(target or None)
        else:
            await d.status.set_paused(action == "pause")
            said = "maintenance mode on" if action == "pause" else "maintenance mode off"
    except Exception as exc:  # the operator sees why; the audit keeps it
        d.audit.record(session.user, peer(request), action, target, f"failed: {exc} (reason: {reason})")
        return back("/admin/timeline", err=f"{action} failed: {exc}")
    d.audit.record(session.user, peer(request), action, target, f"ok: {said} (reason: {reason})")
    return back("/admin/timeline", msg=f"{action}: {said}")


async def switchover(request: Request) -> Response:
    return await _cluster_action(request, "switchover")


async def pause(request: Request) -> Response:
    return await _cluster_action(request, "pause")


async def resume(request: Request) -> Response:
    return await _cluster_action(request, "resume")


async def graphs(request: Request) -> Response:
    session = await require_admin(request)
    d = deps(request)
    marks = [
        Mark(float(e["time"]), f"{e['node']}: {e['from_state']} -> {e['to_state']} ({e['reason']})")
        for e in await d.status.history()
        if e["to_state"] == "active" or e["node"] == OPERATOR_NODE
    ]
    nodes = []
    for node in d.sampler.nodes:
        samples = d.sampler.samples(node)
        services = sorted({s for x in samples for s in x.rss_mib})
        kinds = _busiest({k: v for x in samples for k, v in x.commands_per_s.items()}, samples)
        latency = sorted({s for x in samples for s in x.p99_ms})
        charts = [
            line_chart("IMAP sessions", {"sessions": [(x.time, float(x.imap_sessions)) for x in samples]}, marks),
            line_chart(
                "Commands per second by kind",
                {k: [(x.time, x.commands_per_s.get(k, 0.0)) for x in samples] for k in kinds},
                marks,
            ),
            line_chart(
                "p99 command latency",
                {s: [(x.time, x.p99_ms[s]) for x in samples if s in x.p99_ms] for s in latency},
                marks,
                unit=" ms",
            ),
            line_chart(
                "Deliveries per second", {"deliveries/s": [(x.time, x.deliveries_per_s) for x in samples]}, marks
            ),
            line_chart(
                "CPU per service",
                {s: [(x.time, x.cpu_percent[s]) for x in samples if s in x.cpu_percent] for s in services},
                marks,
                unit="%",
            ),
            line_chart(
                "Memory per service",
                {s: [(x.time, x.rss_mib[s]) for x in samples if s in x.rss_mib] for s in services},
                marks,
                unit=" MiB",
            ),
            line_chart(
                "Store size",
                {"store": [(x.time, x.store_mib) for x in samples if x.store_mib is not None]},
                marks,
                unit=" MiB",
            ),
        ]
        nodes.append({"name": node, "charts": charts, "count": len(samples)})
    return page(request, "admin_graphs.html", session, nodes=nodes, interval=d.sampler.interval)


def _busiest(seen: dict[str, float], samples: list[Sample], top: int = 5) -> list[str]:
    """The `top` command kinds with the most commands over the samples (a chart stays legible)."""
    totals = {k: sum(x.commands_per_s.get(k, 0.0) for x in samples) for k in seen}
    return sorted(sorted(totals, key=lambda k: -totals[k])[:top])


async def users(request: Request) -> Response:
    session = await require_admin(request)
    d = deps(request)
    q = request.query_params.get("q", "").strip().lower()
    sort = request.query_params.get("sort", "name")
    sort = sort if sort in USER_SORTS else "name"
    rows = []
    for u in await d.store.call(lambda a: a.list_users()):
        if q and q not in u.name and not any(q in a for a in u.addresses):
            continue
        view = quota_view(u.usage_bytes, u.quota_bytes)
        rows.append({"name": u.name, "addresses": list(u.addresses), "messages": u.messages, **view})
    if sort == "name":
        rows.sort(key=lambda r: str(r["name"]))
    else:
        rows.sort(key=lambda r: float(r[sort]), reverse=True)  # type: ignore[arg-type]
    return page(request, "admin_users.html", session, rows=rows, q=q, sort=sort, sorts=USER_SORTS)


async def user_detail(request: Request) -> Response:
    session = await require_admin(request)
    d = deps(request)
    name = request.path_params["name"]
    try:
        info = await d.store.call(lambda a: a.get_user(name))
        settings = await d.store.call(lambda a: a.settings(name))
    except AdminError as exc:
        return back("/admin/users", err=str(exc))
    query = settings_pb2.SearchDeliveriesRequest(user=name, limit=20)
    rows = await d.store.call(lambda a: a.deliveries(query))
    logins = [e for e in d.audit.recent(1000) if e.action == "login" and e.target == name][:20]
    return page(
        request,
        "admin_user.html",
        session,
        info=info,
        settings=settings,
        quota=quota_view(info.usage_bytes, info.quota_bytes),
        deliveries=rows,
        logins=logins,
        failures=d.limiter.failures("-", name),
    )


async def user_add(request: Request) -> Response:
    session = await require_admin(request)
    d = deps(request)
    form = await checked_form(request, session)
    name = form.get("name", "").strip()
    password = form.get("password", "")
    if len(password) < MIN_PASSWORD:
        return back("/admin/users", err=f"The password needs at least {MIN_PASSWORD} characters.")
    try:
        quota = int(form.get("quota_mib", "0") or "0") * 2**20
        info = await d.store.call(lambda a: a.add_user(name, password, quota))
        if form.get("address"):
            await d.store.call(lambda a: a.add_address(form["address"].strip(), info.name))
        if form.get("admin") == "on":
            await d.store.call(lambda a: a.set_role(info.name, admin=True))
    except (AdminError, ValueError) as exc:
        d.audit.record(session.user, peer(request), "add user", name[:64], f"refused: {exc}")
        return back("/admin/users", err=str(exc))
    d.audit.record(session.user, peer(request), "add user", info.name, "ok")
    return back(f"/admin/users/{info.name}", msg=f"User {info.name} added.")


async def user_action(request: Request) -> Response:
    session = await require_admin(request)
    d = deps(request)
    form = await checked_form(request, session)
    name = request.path_params["name"]
    action = request.path_params["action"]
    here = f"/admin/users/{name}"
    try:
        if action in ("disable", "enable"):
            await d.store.call(lambda a: a.set_disabled(name, disabled=action == "disable"))
            if action == "disable":
                d.sessions.end_user(name)
            said = f"user {name} {action}d"
        elif action == "password":
            password = form.get("password", "")
            if len(password) < MIN_PASSWORD:
                return back(here, err=f"The password needs at least {MIN_PASSWORD} characters.")
            await d.store.call(lambda a: a.set_password(name, password))
            d.sessions.end_user(name)
            said = "password reset"
        else:
            return back(here, err=f"unknown action {action!r}")
    except AdminError as exc:
        d.audit.record(session.user, peer(request), action, name, f"refused: {exc}")
        return back(here, err=str(exc))
    d.audit.record(session.user, peer(request), action, name, "ok")
    return back(here, msg=said)


def _ms(text: str) -> int:
    """'2026-12-06T03:00' (the datetime-local field) -> unix ms; '' -> 0."""
    if not text:
        return 0
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


async def deliveries(request: Request) -> Response:
    session = await require_admin(request)
    d = deps(request)
    p = request.query_params
    error = ""
    rows: list[settings_pb2.DeliveryRecord] = []
    try:
        query = settings_pb2.SearchDeliveriesRequest(
            user=p.get("user", "").strip(),
            address=p.get("address", "").strip(),
            message_id=p.get("message_id", "").strip(),
            since_ms=_ms(p.get("since", "")),
            until_ms=_ms(p.get("until", "")),
            limit=200,
        )
        rows = await d.store.call(lambda a: a.deliveries(query))
    except ValueError as exc:
        error = f"bad time: {exc}"
    return page(request, "admin_deliveries.html", session, rows=rows, p=p, search_error=error)


async def audit(request: Request) -> Response:
    session = await require_admin(request)
    return page(request, "admin_audit.html", session, entries=deps(request).audit.recent(500), now=time.time())


ROUTES = [
    Route("/admin", status_page),
    Route("/admin/status.json", status_json),
    Route("/metrics", metrics),
    Route("/admin/timeline", timeline),
    Route("/admin/switchover", switchover, methods=["POST"]),
    Route("/admin/pause", pause, methods=["POST"]),
    Route("/admin/resume", resume, methods=["POST"]),
    Route("/admin/graphs", graphs),
    Route("/admin/users", users, methods=["GET"]),
    Route("/admin/users", user_add, methods=["POST"]),
    Route("/admin/users/{name}", user_detail, methods=["GET"]),
    Route("/admin/users/{name}/{action}", user_action, methods=["POST"]),
    Route("/admin/deliveries", deliveries),
    Route("/admin/audit", audit),
]
