"""`mailha user|address|quota` against a running store (in-process CLI, real server)."""

from __future__ import annotations

import io
import json

import pytest

from mailha.cli import main
from tests.store_fixtures import StoreServer

pytestmark = pytest.mark.integration


def _run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str], stdin: str = ""
) -> tuple[int, str, str]:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    status = main(argv)
    out, err = capsys.readouterr()
    return status, out, err


def test_admin_commands(
    store_server: StoreServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    where = ["--store", store_server.address]
    assert _run(monkeypatch, capsys, ["user", "add", "alice", "--quota", "5000", *where], "s3cret\n")[0] == 0
    status, _, err = _run(monkeypatch, capsys, ["user", "add", "alice", *where], "x\n")
    assert status == 1 and "already exists" in err
    status, _, err = _run(monkeypatch, capsys, ["user", "add", "bob", *where], "")
    assert status == 1 and "empty password" in err
    with store_server.client() as c:
        assert c.authenticate("alice", "s3cret") == "alice"  # the password came from stdin
    assert _run(monkeypatch, capsys, ["address", "add", "Alice@Example.org", "alice", *where])[0] == 0
    status, _, err = _run(monkeypatch, capsys, ["address", "add", "not an address", "alice", *where])
    assert status == 1 and "invalid" in err
    status, _, err = _run(monkeypatch, capsys, ["address", "del", "ghost@example.org", *where])
    assert status == 1 and "not known" in err
    status, _, err = _run(monkeypatch, capsys, ["quota", "set", "alice", "-1", *where])
    assert status == 1 and "negative" in err
    assert _run(monkeypatch, capsys, ["quota", "set", "alice", "9000", *where])[0] == 0
    status, out, _ = _run(monkeypatch, capsys, ["quota", "show", "alice", "--json", *where])
    assert json.loads(out) == {"user": "alice", "usage_bytes": 0, "limit_bytes": 9000, "messages": 0}
    status, out, _ = _run(monkeypatch, capsys, ["user", "list", "--json", *where])
    assert [(u["name"], u["addresses"]) for u in json.loads(out)] == [("alice", ["alice@example.org"])]
    monkeypatch.setenv("MAILHA_STORE", store_server.address)
    status, out, _ = _run(monkeypatch, capsys, ["address", "list", "--json", "--user", "alice"])
    assert json.loads(out) == [{"address": "alice@example.org", "user": "alice"}]
    assert _run(monkeypatch, capsys, ["user", "passwd", "alice"], "n3w\n")[0] == 0
    with store_server.client() as c:
        assert c.authenticate("alice@example.org", "n3w") == "alice"
    assert _run(monkeypatch, capsys, ["user", "del", "alice"])[0] == 0
    status, out, _ = _run(monkeypatch, capsys, ["user", "list", "--json"])
    assert json.loads(out) == []
    monkeypatch.delenv("MAILHA_STORE")
    status, _, err = _run(monkeypatch, capsys, ["user", "list"])
    assert status == 1 and "--store" in err
