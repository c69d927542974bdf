"""Issue 9 item 4: nothing a service creates is readable by other local users.

Files 0600, directories 0700 (every service runs with umask 077), logs 0600,
and the node's runtime directory stays 0700 whoever recreates it.
"""

from __future__ import annotations

import os
import pathlib
import stat

from nodeconf.service_process import open_log
from tests.lmtp_standalone import reachable_tmp_dir, standalone_node
from tests.store_fixtures import StoreServer


def mode(path: pathlib.Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def too_open(root: pathlib.Path) -> list[str]:
    """Every file or directory under root (root included) that group or others may use."""
    found = []
    for path in [root, *root.rglob("*")]:
        if mode(path) & 0o077:
            found.append(f"{path.relative_to(root.parent)} {oct(mode(path))}")
    return found


def test_store_files_and_socket_are_owner_only(store_server: StoreServer) -> None:
    with store_server.client() as c:
        c.create_user("alice", "pw")
    assert mode(store_server.data_dir) == 0o700
    assert mode(store_server.data_dir / "lmdb" / "data.mdb") == 0o600
    assert mode(store_server.data_dir / "lmdb" / "lock.mdb") == 0o600
    assert mode(store_server.socket_path) == 0o600
    assert too_open(store_server.data_dir) == []


def test_store_narrows_files_an_older_version_left_readable(tmp_path: pathlib.Path) -> None:
    first = StoreServer(tmp_path / "store", tmp_path / "s.sock").start()
    first.stop()
    os.chmod(tmp_path / "store", 0o755)
    os.chmod(tmp_path / "store" / "lmdb", 0o755)
    for name in ("data.mdb", "lock.mdb"):
        os.chmod(tmp_path / "store" / "lmdb" / name, 0o644)
    again = StoreServer(tmp_path / "store", tmp_path / "s.sock").start()
    try:
        assert too_open(tmp_path / "store") == []
    finally:
        again.stop()


def test_standalone_node_creates_nothing_readable_by_others() -> None:
    with reachable_tmp_dir() as tmp, standalone_node(tmp, service_user="mailha") as node:
        data = node.paths.data_dir
        for must in (
            data / "store" / "lmdb" / "data.mdb",
            data / "store" / "lmdb" / "lock.mdb",
            data / "run" / "store.sock",
            data / "log" / "store.log",
            data / "log" / "imapd.log",
            data / "log" / "lmtpd.log",
        ):
            assert must.exists(), must
        assert mode(data / "run") == 0o700
        assert mode(data / "log" / "store.log") == 0o600
        # The launcher keeps the data directory; the service user's group may only pass through.
        assert mode(data) == (0o710 if os.geteuid() == 0 else 0o700)
        assert too_open(data / "store") == too_open(data / "run") == too_open(data / "log") == []
        assert too_open(data / "tls") == []


def test_logs_are_narrowed_and_never_followed(tmp_path: pathlib.Path) -> None:
    log = tmp_path / "log" / "imapd.log"
    log.parent.mkdir()
    log.write_text("old\n")
    os.chmod(log, 0o644)
    os.close(open_log(log))
    assert mode(log) == 0o600
    target = tmp_path / "elsewhere"
    target.write_text("")
    (tmp_path / "log" / "lmtpd.log").symlink_to(target)
    try:
        os.close(open_log(tmp_path / "log" / "lmtpd.log"))
    except OSError as exc:
        assert exc.errno == 40  # ELOOP: a planted symlink is refused
    else:
        raise AssertionError("open_log followed a symlink")
