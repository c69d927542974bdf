"""bench/dovecot_fill.py: a hybrid fill (LMTP at both ends, `doveadm import` between) leaves Dovecot's
INBOX as a fill entirely over LMTP does: the same message under every UID, of the same size."""

from __future__ import annotations

import imaplib
import pathlib
import re
import tempfile

import pytest

from bench import dovecot
from bench.dovecot_fill import fill_dovecot
from bench.lmtp_fill import WireCorpus

pytestmark = pytest.mark.skipif(dovecot.available() is not None, reason=str(dovecot.available()))

COUNT = 60
EDGE = 15
_SIZE = re.compile(rb"UID (\d+) RFC822\.SIZE (\d+)")


def _inbox(port: int, user: str) -> tuple[list[tuple[int, int]], list[bytes]]:
    """(UID, RFC822.SIZE) of every message, and each message's text after the LMTP trace headers."""
    imap = imaplib.IMAP4("127.0.0.1", port)
    try:
        imap.login(user, "pw")
        imap.select("INBOX", readonly=True)
        _, sizes = imap.uid("FETCH", "1:*", "(UID RFC822.SIZE)")
        pairs = [(int(m[1]), int(m[2])) for line in sizes if isinstance(line, bytes) and (m := _SIZE.search(line))]
        texts: list[bytes] = []
        for uid, _ in pairs:
            _, data = imap.uid("FETCH", str(uid), "(BODY.PEEK[])")
            whole = data[0][1] if isinstance(data[0], tuple) else b""
            # Dovecot's LMTP (and the hybrid fill's imitation of it) puts 3 trace headers first;
            # the Received one is folded over 5 lines: 7 lines in all, then the corpus message.
            texts.append(b"\r\n".join(whole.split(b"\r\n")[7:]))
        return pairs, texts
    finally:
        imap.logout()


@pytest.mark.integration
def test_hybrid_fill_leaves_the_inbox_a_full_lmtp_fill_leaves() -> None:
    scratch = pathlib.Path(tempfile.mkdtemp(prefix="mhdf-", dir="/tmp"))
    scratch.chmod(0o755)  # Dovecot's unprivileged processes read below it
    stack = dovecot.DovecotStack(directory=scratch / "dovecot")
    stack.directory.mkdir()
    stack.start({"hy": "pw", "lm": "pw"})
    try:
        with WireCorpus.build(scratch, COUNT, 5) as corpus:
            hybrid = fill_dovecot(stack, corpus, "hy", "hy@bench.test", "hybrid", edge=EDGE, import_batch=12)
            lmtp = fill_dovecot(stack, corpus, "lm", "lm@bench.test", "lmtp", edge=EDGE)
            expected = [corpus.raw(n) for n in range(COUNT)]
        assert hybrid["dovecot_fill"] == "hybrid" and hybrid["import_messages"] == COUNT - 2 * EDGE  # 3 batches
        assert hybrid["lmtp_delivered"] == 2 * EDGE and hybrid["delivered"] == COUNT
        assert lmtp["dovecot_fill"] == "lmtp" and lmtp["delivered"] == COUNT
        assert hybrid["raw_bytes"] == lmtp["raw_bytes"] == sum(len(m) for m in expected)
        hybrid_sizes, hybrid_texts = _inbox(stack.imap_port, "hy")
        lmtp_sizes, lmtp_texts = _inbox(stack.imap_port, "lm")
        assert [uid for uid, _ in hybrid_sizes] == list(range(1, COUNT + 1))
        # The same size per UID (the imported messages carry trace headers of LMTP's shape), but
        # for the last EDGE: their LMTP session is a new one, and Dovecot's Received id ends in
        # ":T<k>", k counting transactions per session (":T46" against ":T1".."T15" here).
        head = COUNT - EDGE
        assert [s for _, s in hybrid_sizes[:head]] == [s for _, s in lmtp_sizes[:head]]
        tail = [lm - hy for (_, hy), (_, lm) in zip(hybrid_sizes[head:], lmtp_sizes[head:], strict=True)]
        suffix = [len(f":T{k}") if k > 1 else 0 for k in range(1, EDGE + 1)]  # the new session's ids
        assert tail == [len(f":T{n + 1}") - suffix[i] for i, n in enumerate(range(head, COUNT))]
        # ... and the same corpus message n under UID n + 1, in both.
        assert hybrid_texts == lmtp_texts == expected
    finally:
        stack.stop()
        for path in sorted(scratch.rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()
        scratch.rmdir()
