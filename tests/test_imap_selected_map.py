"""SelectedMailbox's map of sequence numbers: EXPUNGE lines and the map after, against the
one-message-at-a-time model (RFC 3501 7.4.1: highest first, each number valid as the ones
above go), for runs, gaps and UIDs the map does not hold."""

from __future__ import annotations

import array
import random

from imapd.session.selected import SelectedMailbox


def _model(uids: list[int], doomed: list[int]) -> tuple[list[bytes], list[int]]:
    left = list(uids)
    lines = []
    for uid in sorted(set(doomed), reverse=True):
        if uid in left:
            lines.append(b"* %d EXPUNGE\r\n" % (left.index(uid) + 1))
            left.remove(uid)
    return lines, left


def test_expunge_lines_and_map_match_the_model() -> None:
    rng = random.Random(3)
    for _ in range(200):
        uids = sorted(rng.sample(range(1, 400), rng.randint(0, 120)))
        doomed = sorted(set(rng.sample(uids, rng.randint(0, len(uids))) + rng.sample(range(1, 400), 5)))
        if rng.random() < 0.3 and uids:  # a run, as EXPUNGE of a block leaves
            a = rng.randrange(len(uids))
            doomed = sorted(set(doomed) | set(uids[a : a + rng.randint(1, 40)]))
        sel = SelectedMailbox(name="INBOX", mailbox_id=1, uidvalidity=1, uids=array.array("I", uids), modseq=1)
        lines, left = _model(uids, doomed)
        assert sel.note_own_expunge(doomed) == lines
        assert list(sel.uids) == left
        sel = SelectedMailbox(name="INBOX", mailbox_id=1, uidvalidity=1, uids=array.array("I", uids), modseq=1)
        sel.pending_expunged = {u for u in doomed if u in uids}
        assert sel.flush(allow_expunge=True) == lines
        assert list(sel.uids) == left
