"""The web app in a real browser: headless Chromium (Debian's package) driven by Playwright.

One `mailha standalone` and one browser for the whole module. Each test
logs in through the page, acts as a person would, and checks the effect
outside the browser too (IMAP login, LMTP delivery into Junk, the SMTP
relay receiving a forward, the store's epoch). Screenshots of every page at
desktop and mobile width go to bench-results/web/. Every page must log no
console error.
"""

from __future__ import annotations

import imaplib
import os
import re
import smtplib
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, expect, sync_playwright
from playwright.sync_api import Error as PlaywrightError
from starlette.routing import Route

from backup import repository
from backup.manifest import read_manifest
from mailha_api import settings_pb2
from nodeconf import service_user
from nodeconf.service_user import DEFAULT_SERVICE_USER
from store.client import StoreClient
from tests.store_fixtures import ROOT
from tests.web_stack import CHROMIUM, CHROMIUM_ARGS, DESKTOP, MOBILE, SHOTS, WebStack, web_stack  # noqa: F401
from web import routes_admin, routes_auth, routes_user

pytestmark = pytest.mark.integration
# Chromium aborts requests when any interface address on the host changes; on a shared machine
# other test runs create and remove namespaces and bridges all the time. A GET is retried; the
# message is not a console error of our pages.
NETWORK_CHANGED = "ERR_NETWORK_CHANGED"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


class Visit:
    """One browser context (its own cookies) with the console errors of its pages collected."""

    def __init__(self, browser: Browser, stack: WebStack) -> None:
        self.stack = stack
        self.context: BrowserContext = browser.new_context(ignore_https_errors=True, viewport=DESKTOP)
        self.context.set_default_timeout(90_000)  # the shared 2-core machine is often loaded
        self.errors: list[str] = []
        self.page: Page = self.context.new_page()
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))

    def _console(self, message: ConsoleMessage) -> None:
        if message.type in ("error", "warning") and NETWORK_CHANGED not in message.text:
            self.errors.append(f"{message.type}: {message.text}")

    def go(self, path: str) -> Page:
        for attempt in range(3):
            try:
                self.page.goto(self.stack.url + path)
                break
            except PlaywrightError as exc:
                if NETWORK_CHANGED not in str(exc) or attempt == 2:
                    raise
        return self.page

    def login(self, user: str, password: str) -> Page:
        page = self.go("/login")
        page.get_by_label("User name or address").fill(user)
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_load_state()
        return page

    def shoot(self, name: str) -> None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        self.page.set_viewport_size(DESKTOP)
        self.page.screenshot(path=str(SHOTS / f"{name}-desktop.png"), full_page=True)
        self.page.set_viewport_size(MOBILE)
        self.page.screenshot(path=str(SHOTS / f"{name}-mobile.png"), full_page=True)
        self.page.set_viewport_size(DESKTOP)

    def close(self) -> None:
        self.context.close()
        assert self.errors == [], f"browser console errors: {self.errors}"


@pytest.fixture
def visit(browser: Browser, web_stack: WebStack) -> Iterator[Visit]:  # noqa: F811
    v = Visit(browser, web_stack)
    try:
        yield v
    finally:
        v.close()


def settings_of(stack: WebStack, user: str) -> settings_pb2.UserSettings:
    admin = stack.admin()
    try:
        return admin.settings(user)
    finally:
        admin.close()


def lmtp_deliver(stack: WebStack, sender: str, rcpt: str, body: bytes) -> tuple[int, bytes]:
    with smtplib.LMTP("127.0.0.1", stack.lmtp_port) as lmtp:
        refused = lmtp.sendmail(sender, [rcpt], body)
        assert refused == {}, refused
    return 250, b""


def mailbox_bodies(stack: WebStack, user: str, mailbox: str) -> list[bytes]:
    with StoreClient(stack.store) as client:
        selected = client.select(user, mailbox)
        box = selected.mailbox.mailbox_id
        return [client.fetch_body(user, box, uid) for uid in selected.uids]


def unlabelled_controls(page: Page) -> list[str]:
    """Every visible input, select, textarea and button that has no accessible name."""
    found: list[str] = page.evaluate(
        """() => [...document.querySelectorAll('input, select, textarea, button')]
            .filter(el => el.type !== 'hidden')
            .filter(el => {
                if (el.tagName === 'BUTTON') return !(el.textContent.trim() || el.getAttribute('aria-label'));
                return !((el.labels && el.labels.length) || el.getAttribute('aria-label'));
            })
            .map(el => el.outerHTML.slice(0, 120))"""
    )
    return found


def test_login_by_keyboard_and_admin_sees_the_status_the_store_has(visit: Visit, web_stack: WebStack) -> None:  # noqa: F811
    page = visit.go("/login")
    visit.shoot("login")
    assert unlabelled_controls(page) == []
    # Keyboard only: the user field has focus, Tab moves to the password, Enter submits.
    assert page.evaluate("document.activeElement.id") == "user"
    page.keyboard.type("boss")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "password"
    page.keyboard.type("boss-password")
    page.keyboard.press("Enter")
    page.wait_for_url("**/admin")
    status = page.request.get(web_stack.url + "/admin/status.json").json()
    with StoreClient(web_stack.store) as client:
        store_epoch = client.epoch()
    assert status["epoch"] == store_epoch
    assert page.locator("#active").inner_text() == status["active"]
    assert page.locator("#epoch").inner_text() == str(store_epoch)
    # Live: the page's own poller replaces "at page load" within about a second.
    expect(page.locator("#updated")).to_have_text(re.compile(r"UTC$"), timeout=5000)
    visit.shoot("admin-status")
    assert unlabelled_controls(page) == []

    # Keyboard navigation: Tab from the top lands on the skip link, then the menu; Enter follows a link.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    for _ in range(5):  # My mail, Status, Failovers, Graphs, Users
        page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Users"
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.url.endswith("/admin/users")

    for name, path in [
        ("admin-timeline", "/admin/timeline"),
        ("admin-graphs", "/admin/graphs"),
        ("admin-users", "/admin/users"),
        ("admin-user-alice", "/admin/users/alice"),
        ("admin-deliveries", "/admin/deliveries"),
        ("admin-audit", "/admin/audit"),
    ]:
        visit.go(path)
        assert unlabelled_controls(page) == [], path
        visit.shoot(name)
    visit.go("/admin/graphs")
    assert page.locator("svg.chart").count() == 7
    assert "IMAP sessions" in (page.locator("svg.chart title").first.text_content() or "")
    visit.go("/admin/audit")
    assert "login" in page.locator("table").inner_text()


def test_user_cannot_open_the_console_and_posts_need_the_csrf_token(visit: Visit, web_stack: WebStack) -> None:  # noqa: F811
    page = visit.login("alice", "alice-password")
    assert page.url.endswith("/me")
    cookies = {c["name"]: c for c in visit.context.cookies()}
    session = cookies["mailha_session"]
    assert session["secure"] and session["httpOnly"] and session["sameSite"] == "Strict"
    reply = page.request.get(web_stack.url + "/admin/status.json")
    assert reply.status == 403
    forged = page.request.post(web_stack.url + "/me/blocked", form={"domain": "evil.example"})
    assert forged.status == 403
    forged = page.request.post(web_stack.url + "/me/blocked", form={"domain": "evil.example", "csrf": "guess"})
    assert forged.status == 403
    assert "evil.example" not in settings_of(web_stack, "alice").blocked_domains


def test_password_change_then_imap_login_with_the_new_one(visit: Visit, web_stack: WebStack) -> None:  # noqa: F811
    web_stack_admin = web_stack.admin()
    try:
        web_stack_admin.add_user("dora", "dora-password", 0)
    finally:
        web_stack_admin.close()
    page = visit.login("dora", "dora-password")
    visit.shoot("me")
    assert unlabelled_controls(page) == []
    page.get_by_label("Current password").fill("wrong-password")
    page.get_by_label("New password (at least 8 characters)").fill("dora-new-password")
    page.get_by_label("New password again").fill("dora-new-password")
    page.get_by_role("button", name="Change password").click()
    assert "current password is wrong" in page.locator(".error").inner_text()
    page.get_by_label("Current password").fill("dora-password")
    page.get_by_label("New password (at least 8 characters)").fill("dora-new-password")
    page.get_by_label("New password again").fill("dora-new-password")
    page.get_by_role("button", name="Change password").click()
    assert "Password changed" in page.locator(".flash").inner_text()
    imap = imaplib.IMAP4("127.0.0.1", web_stack.imap_port)
    try:
        assert imap.login("dora", "dora-new-password")[0] == "OK"
    finally:
        imap.logout()
    imap = imaplib.IMAP4("127.0.0.1", web_stack.imap_port)
    try:
        with pytest.raises(imaplib.IMAP4.error):
            imap.login("dora", "dora-password")
    finally:
        imap.logout()


def test_blocked_domain_goes_to_junk_and_shows_in_my_log(visit: Visit, web_stack: WebStack) -> None:  # noqa: F811
    page = visit.login("alice", "alice-password")
    page.get_by_label("Block mail from domain").fill("not a domain")
    page.get_by_role("button", name="Block domain").click()
    assert "is not a domain name" in page.locator(".error").inner_text()
    page.get_by_label("Block mail from domain").fill("Spam.Example")
    page.get_by_role("button", name="Block domain").click()
    assert "blocking spam.example" in page.locator(".flash").inner_text()
    assert list(settings_of(web_stack, "alice").blocked_domains) == ["spam.example"]
    message = b"From: x@spam.example\r\nSubject: buy now\r\nMessage-ID: <blocked-1@spam.example>\r\n\r\nhello\r\n"
    lmtp_deliver(web_stack, "x@spam.example", "alice@example.test", message)
    junk = mailbox_bodies(web_stack, "alice", "Junk")
    assert any(b"<blocked-1@spam.example>" in m for m in junk)
    assert not any(b"<blocked-1@spam.example>" in m for m in mailbox_bodies(web_stack, "alice", "INBOX"))
    visit.go("/me")
    log_text = page.locator("table.deliveries").inner_text()
    assert "<blocked-1@spam.example>" in log_text and "Junk" in log_text and "blocked sender domain" in log_text
    visit.shoot("me-blocked")
    # The operator finds it in the delivery log by Message-ID.
    visit.context.clear_cookies()
    visit.login("boss", "boss-password")
    visit.go("/admin/deliveries?message_id=blocked-1")
    assert "x@spam.example" in page.locator("table.deliveries").inner_text()


def test_forwarding_without_a_copy_reaches_the_relay(visit: Visit, web_stack: WebStack) -> None:  # noqa: F811
    web_stack_admin = web_stack.admin()
    try:
        web_stack_admin.add_user("erin", "erin-password", 0)
        web_stack_admin.add_address("erin@example.test", "erin")
    finally:
        web_stack_admin.close()
    page = visit.login("erin", "erin-password")
    page.get_by_label("Forward my mail to (empty: no forwarding)").fill("erin@elsewhere.test")
    page.get_by_role("button", name="Save forwarding").click()
    assert "forwarding to erin@elsewhere.test" in page.locator(".flash").inner_text()
    before = len(web_stack.sink.received)
    message = b"From: f@sender.test\r\nSubject: fwd me\r\nMessage-ID: <fwd-1@sender.test>\r\n\r\nplease\r\n"
    lmtp_deliver(web_stack, "f@sender.test", "erin@example.test", message)
    received = web_stack.sink.wait_for(before + 1)
    sender, rcpts, data = received[before]
    assert (sender, rcpts) == ("f@sender.test", ["erin@elsewhere.test"])
    assert b"<fwd-1@sender.test>" in data
    assert mailbox_bodies(web_stack, "erin", "INBOX") == []  # no copy kept
    visit.go("/me")
    assert "forwarded" in page.locator("table.deliveries").inner_text()


def test_quota_bar_moves_after_an_imap_append(visit: Visit, web_stack: WebStack) -> None:  # noqa: F811
    page = visit.login("alice", "alice-password")
    bar = page.locator("#quota-bar")
    before = float(bar.get_attribute("aria-valuenow") or "nan")
    imap = imaplib.IMAP4("127.0.0.1", web_stack.imap_port)
    try:
        imap.login("alice", "alice-password")
        body = b"Subject: big\r\n\r\n" + b"x" * 200_000 + b"\r\n"
        assert imap.append("INBOX", "", imaplib.Time2Internaldate(time.time()), body)[0] == "OK"
    finally:
        imap.logout()
    page.reload()
    after = float(bar.get_attribute("aria-valuenow") or "nan")
    assert after >= before + 19.0  # 200 KB of a 1 MiB quota
    visit.shoot("me-quota")


def test_spam_header_and_refused_domain_at_lmtp(web_stack: WebStack) -> None:  # noqa: F811
    admin = web_stack.admin()
    try:
        admin.add_user("fred", "fred-password", 0)
        admin.add_address("fred@example.test", "fred")
        admin.put_settings(
            settings_pb2.UserSettings(
                user="fred",
                spam_action=settings_pb2.SPAM_DISCARD,
                blocked_domains=["refused.example"],
                block_action=settings_pb2.BLOCK_REFUSE,
            )
        )
    finally:
        admin.close()
    spam = b"X-Spam-Flag: YES\r\nMessage-ID: <spam-1@a.test>\r\n\r\nbuy\r\n"
    lmtp_deliver(web_stack, "s@a.test", "fred@example.test", spam)
    with smtplib.LMTP("127.0.0.1", web_stack.lmtp_port) as lmtp, pytest.raises(smtplib.SMTPDataError) as info:
        lmtp.sendmail("x@refused.example", ["fred@example.test"], b"Message-ID: <r-1@refused.example>\r\n\r\nhi\r\n")
    assert info.value.smtp_code == 550  # refused per recipient after DATA
    ham = b"Message-ID: <ham-1@a.test>\r\n\r\nhello\r\n"
    lmtp_deliver(web_stack, "s@a.test", "fred@example.test", ham)
    everything = [m for box in ("INBOX", "Junk") for m in mailbox_bodies(web_stack, "fred", box)]
    assert len(everything) == 1 and b"<ham-1@a.test>" in everything[0]
    admin = web_stack.admin()
    try:
        log = {r.message_id: r for r in admin.deliveries(settings_pb2.SearchDeliveriesRequest(user="fred"))}
    finally:
        admin.close()
    assert (log["<spam-1@a.test>"].result, log["<spam-1@a.test>"].folder) == ("spam", "")
    assert log["<r-1@refused.example>"].reply_code == 550
    assert (log["<ham-1@a.test>"].reply_code, log["<ham-1@a.test>"].folder) == (250, "INBOX")


def test_operator_adds_and_disables_a_user_from_the_console(visit: Visit, web_stack: WebStack) -> None:  # noqa: F811
    page = visit.login("boss", "boss-password")
    visit.go("/admin/users")
    page.get_by_label("User name").fill("gina")
    page.get_by_label("Address (optional)").fill("gina@example.test")
    page.get_by_label("Password (at least 8 characters)").fill("gina-password")
    page.get_by_role("button", name="Add user").click()
    assert "User gina added" in page.locator(".flash").inner_text()
    imap = imaplib.IMAP4("127.0.0.1", web_stack.imap_port)
    try:
        assert imap.login("gina@example.test", "gina-password")[0] == "OK"
    finally:
        imap.logout()
    page.get_by_role("button", name="Disable user").click()
    assert page.locator("#user-state").inner_text() == "disabled"
    imap = imaplib.IMAP4("127.0.0.1", web_stack.imap_port)
    try:
        with pytest.raises(imaplib.IMAP4.error):
            imap.login("gina", "gina-password")
    finally:
        imap.logout()
    visit.go("/admin/users?q=gina")
    assert page.locator("#users tbody tr").count() == 1
    visit.go("/admin/audit")
    audit = page.locator("table").inner_text()
    assert "add user" in audit and "disable" in audit and "gina-password" not in audit


def test_https_offers_http2_and_http11_and_failed_logins_are_slowed_and_logged(
    visit: Visit,
    web_stack: WebStack,  # noqa: F811
) -> None:
    for offered, chosen in ((["h2", "http/1.1"], "h2"), (["http/1.1"], "http/1.1")):
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.set_alpn_protocols(offered)
        with (
            socket.create_connection(("127.0.0.1", web_stack.web_port), timeout=10) as raw,
            context.wrap_socket(raw) as tls,
        ):
            assert tls.selected_alpn_protocol() == chosen
    with pytest.raises(ConnectionError), socket.create_connection(("127.0.0.1", web_stack.web_port), timeout=10) as s:
        s.sendall(b"GET /login HTTP/1.1\r\nHost: x\r\n\r\n")  # plaintext HTTP on the TLS port
        if not s.recv(100):
            raise ConnectionResetError("closed without an answer")
    # Wrong passwords: answered after a growing delay, logged with the user name and never the password.
    timings = []
    request = visit.context.request
    form_page = request.get(web_stack.url + "/login")
    token = form_page.text().split('name="csrf" value="', 1)[1].split('"', 1)[0]
    for _ in range(3):
        t0 = time.monotonic()
        reply = request.post(
            web_stack.url + "/login", form={"user": "alice", "password": "Wrong-Secret-42", "csrf": token}
        )
        timings.append(time.monotonic() - t0)
        assert "Login failed" in reply.text()
    assert timings[1] >= 0.9 and timings[2] >= 1.9, timings  # 0.5 s, 1 s, 2 s
    web_log = (web_stack.data / "log" / "web.log").read_text()
    assert "web login failed: user=alice" in web_log
    assert "Wrong-Secret-42" not in web_log


def _backup_as_service_user(*args: str) -> str:
    """`mailha backup ...` as the account the web runs as (the repository is 0700: its owner's)."""
    user = service_user.resolve(DEFAULT_SERVICE_USER)
    assert user is not None
    done = subprocess.run(
        user.argv((sys.executable, "-m", "mailha.cli", "backup", *args), bind_low_ports=False),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    return done.stdout


def _gauges(page: Page, stack: WebStack) -> dict[str, float]:
    """The web's /metrics (no login needed), as name -> value."""
    reply = page.context.request.get(stack.url + "/metrics")
    assert reply.status == 200 and reply.headers["content-type"].startswith("text/plain")
    values = [line.rsplit(" ", 1) for line in reply.text().splitlines() if not line.startswith("#")]
    return {name: float(value) for name, value in values}


def test_console_shows_the_last_backup_and_prometheus_its_age(visit: Visit, web_stack: WebStack) -> None:  # noqa: F811
    page = visit.login("boss", "boss-password")
    assert page.url.endswith("/admin")
    repo = web_stack.backup_repo
    assert page.locator("#backup-error").inner_text() == f"{repo}: no such backup repository"
    assert _gauges(page, web_stack) == {"mailha_backup_status_readable": 0.0}

    # As an operator sets it up: the repository belongs to the account the web runs as.
    user = service_user.resolve(DEFAULT_SERVICE_USER)
    assert user is not None
    repo.mkdir(mode=0o700)
    os.chown(repo, user.uid, user.gid)

    _backup_as_service_user("create", str(repo), "--data", str(web_stack.data))
    _backup_as_service_user("verify", str(repo))
    full = read_manifest(repository.latest(repo))[0]
    visit.go("/admin")
    assert page.locator("#backup-kind").inner_text() == "full"
    shown = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(full.created))
    assert page.locator("#backup-time").inner_text() == shown
    assert page.locator("#backup-size").inner_text() == f"{full.stored_bytes} bytes, {full.messages} messages"
    assert page.locator("#backup-run").inner_text().startswith("succeeded at ")
    assert page.locator("#backup-verify").inner_text().startswith("OK at ")
    assert page.locator("#backup-age").inner_text().endswith(" s")
    visit.shoot("admin-status-backups")
    gauges = _gauges(page, web_stack)
    age = gauges.pop("mailha_backup_last_good_age_seconds")
    assert 0 <= age < 120 and time.time() - full.created >= age
    assert gauges == {"mailha_backup_last_verify_ok": 1.0, "mailha_backup_status_readable": 1.0}

    # An incremental is the newest now: its own kind, and not verified until verify runs on it.
    _backup_as_service_user("create", str(repo), "--data", str(web_stack.data), "--since", "latest")
    visit.go("/admin")
    assert page.locator("#backup-kind").inner_text() == "incremental"
    assert page.locator("#backup-verify").inner_text() == "not verified yet"
    assert "mailha_backup_last_verify_ok" not in _gauges(page, web_stack)


def test_graphs_show_commands_by_kind_p99_and_deliveries_from_the_front_ends(visit: Visit, web_stack: WebStack) -> None:  # noqa: F811
    page = visit.login("boss", "boss-password")
    imap = imaplib.IMAP4("127.0.0.1", web_stack.imap_port)
    try:
        imap.login("alice", "alice-password")
        imap.select("INBOX")
        for _ in range(20):
            imap.noop()
        lmtp_deliver(web_stack, "graph@ok.test", "alice@example.test", b"Subject: graphed\r\n\r\nhi\r\n")

        def chart(title: str) -> str:
            return page.locator("svg.chart title", has_text=title).first.text_content() or ""

        deadline = time.monotonic() + 30
        while True:  # the sampler runs every second; a sample after the commands holds their rates
            visit.go("/admin/graphs")
            commands, p99, sessions = chart("Commands per second"), chart("p99 command latency"), chart("IMAP sessions")
            deliveries = chart("Deliveries per second")
            if "imapd NOOP" in commands and "imapd" in p99 and "lmtpd" in p99 and "sessions 1" in sessions:
                break
            assert time.monotonic() < deadline, (commands, p99, sessions, deliveries)
            time.sleep(1)
        assert "lmtpd " in commands  # lmtpd's own kinds beside imapd's (the 5 busiest kinds are drawn)
        assert page.locator("svg.chart polyline").count() >= 6
        visit.shoot("admin-graphs-busy")
    finally:
        imap.logout()


def test_every_post_action_needs_the_csrf_token_and_refusals_are_audited(visit: Visit, web_stack: WebStack) -> None:  # noqa: F811

    page = visit.login("boss", "boss-password")
    request = visit.context.request
    posts = [
        r.path.replace("{name}", "alice").replace("{action}", "disable")
        for r in [*routes_auth.ROUTES, *routes_user.ROUTES, *routes_admin.ROUTES]
        if isinstance(r, Route) and r.methods and "POST" in r.methods
    ]
    assert len(posts) >= 12, posts
    for path in posts:
        reply = request.post(web_stack.url + path, form={"domain": "csrf.example", "confirm": "yes"}, max_redirects=0)
        if path == "/login":  # its own token (a cookie set with the form): refused back to the form
            assert reply.status == 303 and "expired" in reply.headers["location"], path
        elif path == "/logout":  # the session stays
            assert reply.status == 303 and "Stale" in reply.headers["location"], path
        else:
            assert reply.status == 403, (path, reply.status)
    assert "csrf.example" not in settings_of(web_stack, "alice").blocked_domains
    admin = web_stack.admin()
    try:
        assert not admin.settings("alice").disabled
    finally:
        admin.close()
    visit.go("/admin/audit")
    audit = page.locator("table").inner_text()
    for path in posts:
        if path not in ("/login", "/logout"):
            assert path in audit, path
    assert "refused: bad CSRF token" in audit
    # With the token but without ticking the confirmation, a cluster action is refused too.
    token = page.locator("input[name=csrf]").first.get_attribute("value") or ""
    reply = request.post(web_stack.url + "/admin/pause", form={"csrf": token}, max_redirects=0)
    assert reply.status == 303 and "confirmation" in reply.headers["location"]
