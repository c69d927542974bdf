"""The operators' console against a real HA lab (tests/ha_agent_lab.py): two agents
in namespaces, a real ZooKeeper ensemble, the web app on the host with --config.

In headless Chromium: the status page equals `mailha status --json`, a
switchover run from the page (behind its confirmation) moves the service,
the page follows it live, and the timeline, the audit and the graphs mark it.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page, expect, sync_playwright

from haagent import netns
from nodeconf.paths import store_socket_path
from nodeconf.selfsigned import ensure_dev_certificate
from store.admin import Admin
from tests.ha_agent_lab import AgentLab
from tests.ha_lab_fixtures import Lab
from tests.imap_clients_stack import free_port
from tests.test_ha_failover_agent import _start_pair
from tests.web_stack import CHROMIUM, CHROMIUM_ARGS, DESKTOP, MOBILE, SHOTS, _wait_port

pytestmark = [pytest.mark.integration, pytest.mark.root, pytest.mark.slow]
ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture
def cluster_web(agent_lab: AgentLab, tmp_path: pathlib.Path) -> Iterator[tuple[AgentLab, str, str, str]]:
    first, second = _start_pair(agent_lab)
    admin = Admin.connect(f"unix:{store_socket_path(agent_lab.cfg, first)}")
    try:
        admin.add_user("op", "op-password", 0)
        admin.set_role("op", admin=True)
    finally:
        admin.close()
    cert, key = ensure_dev_certificate(tmp_path / "tls")
    port = free_port()
    log = tmp_path / "web.log"
    argv = [
        sys.executable, "-m", "mailha.cli", "web", "serve", "--config", str(agent_lab.config_path),
        "--listen", f"127.0.0.1:{port}", "--cert", str(cert), "--key", str(key), "--sample-interval", "0.5",
    ]  # fmt: skip
    with open(log, "wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        _wait_port(port, process, log)
        yield agent_lab, f"https://127.0.0.1:{port}", first, second
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _status_json(lab: AgentLab) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-m", "mailha.cli", "status", "--config", str(lab.config_path), "--json"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        timeout=60,
    )
    status: dict[str, object] = json.loads(out.stdout)
    return status


def test_console_shows_the_cluster_and_runs_a_switchover(cluster_web: tuple[AgentLab, str, str, str]) -> None:
    lab, url, first, second = cluster_web
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(ignore_https_errors=True, viewport=DESKTOP)
            page = context.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(url + "/login")
            page.get_by_label("User name or address").fill("op")
            page.get_by_label("Password").fill("op-password")
            page.get_by_role("button", name="Log in").click()
            page.wait_for_url("**/admin")
            status = _status_json(lab)
            assert status["active"] == first
            assert page.locator("#active").inner_text() == first
            assert page.locator("#epoch").inner_text() == str(status["epoch"])
            assert page.locator("#fip").inner_text() == first
            shots = SHOTS / "cluster"
            shots.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(shots / "admin-status-desktop.png"), full_page=True)
            page.set_viewport_size(MOBILE)
            page.screenshot(path=str(shots / "admin-status-mobile.png"), full_page=True)
            page.set_viewport_size(DESKTOP)

            page.goto(url + "/admin/timeline")
            page.get_by_label("Switch over to").select_option(second)
            page.get_by_label("Reason (optional)").first.fill("drill from the browser test")
            page.get_by_label("I confirm the switchover").check()
            with page.expect_navigation(timeout=90_000):
                page.get_by_role("button", name="Switch over").click()
            assert f"{first} -> {second}" in page.locator(".flash").inner_text()
            timeline = page.locator("table").first.inner_text()
            assert second in timeline and "active" in timeline
            # The operator's action is in the agents' own history, with name and reason.
            assert f"op: switchover {second} requested (drill from the browser test)" in timeline
            history = subprocess.run(
                [sys.executable, "-m", "mailha.cli", "history", "--config", str(lab.config_path), "--json"],
                capture_output=True, text=True, check=True, cwd=ROOT, timeout=60,
            ).stdout  # fmt: skip
            assert "op: switchover" in history
            lanes = page.locator("svg.timeline")
            assert lanes.count() == 1
            assert lanes.locator("line.mark").count() >= 1
            assert lanes.locator("rect.s-active").count() >= 2  # first, then second
            page.screenshot(path=str(shots / "admin-timeline-desktop.png"), full_page=True)
            page.set_viewport_size(MOBILE)
            page.screenshot(path=str(shots / "admin-timeline-mobile.png"), full_page=True)
            page.set_viewport_size(DESKTOP)

            page.goto(url + "/admin")
            expect(page.locator("#active")).to_have_text(second, timeout=20_000)
            after = _status_json(lab)
            assert after["active"] == second
            expect(page.locator("#epoch")).to_have_text(str(after["epoch"]), timeout=20_000)
            page.goto(url + "/admin/audit")
            audit = page.locator("table").inner_text()
            assert "switchover" in audit and "op" in audit and "drill from the browser test" in audit
            page.wait_for_timeout(1500)  # a few samples after the switchover
            page.goto(url + "/admin/graphs")
            marks = [t for t in page.locator("svg.chart line.mark title").all_text_contents()]
            # The operator's request and the takeover it caused, on the graphs' time axis.
            assert any("op: switchover" in t and "drill from the browser test" in t for t in marks), marks
            assert any(t.startswith(f"{second}: ") and "-> active" in t for t in marks), marks
            page.screenshot(path=str(shots / "admin-graphs-desktop.png"), full_page=True)
            page.set_viewport_size(MOBILE)
            page.screenshot(path=str(shots / "admin-graphs-mobile.png"), full_page=True)
            context.close()
        finally:
            browser.close()
    assert errors == []


WEB_PORT = 8443  # inside the lab's namespaces: no other test's listener is there


@pytest.fixture
def web_lab(agent_lab_base: Lab, tmp_path: pathlib.Path) -> Iterator[AgentLab]:
    """A lab whose agents each serve the web app on WEB_PORT, like `cluster up`'s nodes."""
    lab = AgentLab(agent_lab_base, tmp_path, f"/web-{uuid.uuid4().hex[:12]}", web_port=WEB_PORT)
    try:
        yield lab
    finally:
        lab.stop()


def _goto(page: Page, url: str) -> None:
    # Chromium aborts a load when any host interface changes (other tests' namespaces come and go).
    for attempt in range(3):
        try:
            page.goto(url)
            return
        except PlaywrightError as exc:
            if "ERR_NETWORK_CHANGED" not in str(exc) or attempt == 2:
                raise


def _login(page: Page, base: str) -> None:
    _goto(page, base + "/login")
    page.get_by_label("User name or address").fill("op")
    page.get_by_label("Password").fill("op-password")
    with page.expect_navigation(timeout=60_000):  # the POST, then its redirect
        page.get_by_role("button", name="Log in").click()
    assert page.url == base + "/admin", f"{page.url}: {page.locator('main').inner_text()[:300]}"


def _web_pid(lab: AgentLab, node: str) -> int | None:
    """The `mailha web serve` process in the node's namespace (None: none running)."""
    for pid in netns.pids_in_netns(lab.cfg.node(node).namespace):
        try:
            argv = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"web" in argv and b"serve" in argv and b"setpriv" not in argv[0]:
            return pid
    return None


def _https_up(host: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, WEB_PORT), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"nothing serves https://{host}:{WEB_PORT} after {timeout:.0f} s")


def test_every_node_serves_the_console_and_the_survivor_keeps_it(web_lab: AgentLab) -> None:
    lab = web_lab
    first, second = _start_pair(lab)
    admin = Admin.connect(f"unix:{store_socket_path(lab.cfg, first)}")
    try:
        admin.add_user("op", "op-password", 0)
        admin.set_role("op", admin=True)
    finally:
        admin.close()
    hosts = {
        first: str(lab.cfg.node(first).address.ip),
        second: str(lab.cfg.node(second).address.ip),
        "floating": str(lab.cfg.floating_ip.address.ip),
    }
    for host in hosts.values():
        _https_up(host)
    # Supervised: the standby's web, killed, is started again by its agent.
    killed = _web_pid(lab, second)
    assert killed is not None
    os.kill(killed, signal.SIGKILL)
    lab.wait_for("the web restarted", lambda: _web_pid(lab, second) not in (None, killed), timeout=30)
    _https_up(hosts[second])
    status = _status_json(lab)
    assert status["active"] == first
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(ignore_https_errors=True, viewport=DESKTOP)
            context.set_default_timeout(60_000)
            pages: dict[str, Page] = {}
            for name, host in hosts.items():
                page = context.new_page()
                page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
                _login(page, f"https://{host}:{WEB_PORT}")
                # Each node's own web (not a proxy): the same cluster, told by ZooKeeper.
                assert page.locator("#active").inner_text() == first, name
                assert page.locator("#epoch").inner_text() == str(status["epoch"]), name
                assert page.locator("#fip").inner_text() == first, name
                pages[name] = page
            (SHOTS / "cluster").mkdir(parents=True, exist_ok=True)
            pages["floating"].screenshot(path=str(SHOTS / "cluster" / "admin-status-floating-ip.png"), full_page=True)

            pages.pop(first).close()
            assert lab.kill_node(first) >= 4  # agent, store, lmtpd, imapd, web
            lab.wait_for(f"{second} serving", lambda: lab.active() == second and lab.serves(), timeout=30)
            after = _status_json(lab)
            assert after["active"] == second and int(str(after["epoch"])) > int(str(status["epoch"]))
            # The survivor's web, on its own address and on the floating IP it holds now: the
            # pages opened before the failure update themselves (no reload) to the new active node.
            for name in (second, "floating"):
                page = pages[name]
                if name == "floating":
                    _login(page, f"https://{hosts['floating']}:{WEB_PORT}")  # another web behind the address now
                expect(page.locator("#active")).to_have_text(second, timeout=30_000)
                expect(page.locator("#epoch")).to_have_text(str(after["epoch"]), timeout=30_000)
                # The address holder comes from the namespaces, sampled on its own poll.
                expect(page.locator("#fip")).to_have_text(second, timeout=30_000)
            pages[second].screenshot(path=str(SHOTS / "cluster" / "admin-status-survivor.png"), full_page=True)
            with pytest.raises(OSError):
                socket.create_connection((hosts[first], WEB_PORT), timeout=1).close()
            context.close()
        finally:
            browser.close()
    assert [e for e in errors if "ERR_NETWORK_CHANGED" not in e and "Failed to load resource" not in e] == []
