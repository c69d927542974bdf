"""Issue 9.12: `mailha import imap` logged in in clear without a word. Without
--tls/--starttls it now refuses, before reading the password or connecting,
unless --insecure-plaintext says the operator means it."""

from __future__ import annotations

import pathlib
import socket
import subprocess
import sys

from tests.store_fixtures import ROOT


def _run(tmp: pathlib.Path, *extra: str) -> tuple[subprocess.CompletedProcess[str], list[bytes]]:
    (tmp / "pw").write_text("s3cret pass\n")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(0.5)
        argv = ["import", "imap", "--host", "127.0.0.1", "--port", str(listener.getsockname()[1]), "--user", "old"]
        argv += ["--password-file", str(tmp / "pw"), "--to-user", "dest", "--state-dir", str(tmp / "state")]
        argv += ["--store", "unix:" + str(tmp / "no-store.sock"), *extra]
        done = subprocess.run(
            [sys.executable, "-m", "mailha.cli", *argv],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=ROOT,
        )
        accepted: list[bytes] = []
        try:
            conn, _ = listener.accept()
            conn.close()
            accepted.append(b"connected")
        except TimeoutError:
            pass
    return done, accepted


def test_plaintext_import_is_refused_without_the_flag(tmp_path: pathlib.Path) -> None:
    done, connected = _run(tmp_path)
    assert done.returncode == 2
    assert "refusing to send the source password in clear" in done.stderr
    assert "--insecure-plaintext" in done.stderr
    assert connected == [], "it must not even connect"
    assert "s3cret" not in done.stderr + done.stdout


def test_the_flag_and_tls_are_exclusive(tmp_path: pathlib.Path) -> None:
    done, _ = _run(tmp_path, "--tls", "--insecure-plaintext")
    assert done.returncode == 2 and "not allowed with argument" in done.stderr
