"""SelectedMailbox's map of sequence numbers: EXPUNGE lines and the map after, against the
one-message-at-a-time model (RFC 3501 7.4.1: highest first, each number valid as the ones
above go), for runs, gaps and UIDs the map does not hold."""

from __future__ import annotations

import array
import random

from imapd.protocol.sequence import SequenceSet
from imapd.session.selected import SelectedMailbox
from imapd.store_client import ChangeEvent, MessageMeta
from store import uidset


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


def test_a_run_of_the_map_takes_the_same_lines_and_vanished_as_the_model() -> None:
    """Doomed UIDs that are exactly a slice of the map (EXPUNGE of a block of \\Deleted
    messages: SelectedMailbox._seqs answers a range) and slices with a UID the map lacks."""
    rng = random.Random(11)
    for n in range(150):
        uids = sorted(rng.sample(range(1, 3000), rng.randint(1, 1200)))
        a = rng.randrange(len(uids))
        doomed = uids[a : a + rng.randint(1, 1100)]
        if n % 3 == 0:  # one UID the map does not hold inside the run: not a slice any more
            missing = sorted(set(range(doomed[0], doomed[-1] + 2)) - set(uids))
            doomed = sorted({*doomed, missing[0]})
        sel = SelectedMailbox(name="INBOX", mailbox_id=1, uidvalidity=1, uids=array.array("I", uids), modseq=1)
        sel.own_modseq = {u: 5 for u in uids}
        sel.recent = set(uids[-10:])
        lines, left = _model(uids, doomed)
        assert sel.note_own_expunge(doomed) == lines
        assert list(sel.uids) == left
        assert set(sel.own_modseq) == set(left) and sel.recent == set(uids[-10:]) & set(left)
        sel = SelectedMailbox(
            name="INBOX", mailbox_id=1, uidvalidity=1, uids=array.array("I", uids), modseq=1, qresync=True
        )
        present = [u for u in doomed if u in set(uids)]
        vanished = SequenceSet.from_numbers(present).to_bytes()
        assert sel.note_own_expunge(doomed) == [b"* VANISHED " + vanished + b"\r\n"]
        assert list(sel.uids) == left


def test_a_catch_up_does_not_report_flag_changes_the_snapshot_already_held() -> None:
    """A resubscription's catch-up event carries every flag change since the modseq it asked
    from under its newest modseq; a change at or below the session's own modseq was in the
    snapshot the session started from, so no untagged FETCH for it (Dovecot sends none)."""
    sel = SelectedMailbox(name="INBOX", mailbox_id=1, uidvalidity=1, uids=array.array("I", [1, 2, 3]), modseq=10)
    catch_up = ChangeEvent(
        mailbox_id=1,
        modseq=12,
        flags=(MessageMeta(1, 9, ("\\Seen",)), MessageMeta(2, 10, ("\\Seen",)), MessageMeta(3, 12, ("\\Flagged",))),
    )
    sel.absorb(catch_up)
    assert set(sel.pending_flags) == {3}
    assert sel.modseq == 12


def test_the_store_is_sent_the_smallest_uid_set_naming_the_messages() -> None:
    """`span`: a lone UID alone (the store parses it without its pattern), a run of the map as
    first:last, anything else UID by UID; each names exactly the messages asked for."""
    sel = SelectedMailbox(name="INBOX", mailbox_id=1, uidvalidity=1, uids=array.array("I", [3, 4, 5, 9, 10]), modseq=1)
    cases = [
        (sel.uids_for(SequenceSet.parse(b"1"), uid=False), "3"),
        (sel.uids_for(SequenceSet.parse(b"4"), uid=False), "9"),
        (sel.uids_for(SequenceSet.parse(b"1:3"), uid=False), "3:5"),
        (sel.uids_for(SequenceSet.parse(b"3:4"), uid=False), "5:9"),  # a run of the map: no 6-8 there
        (sel.uids_for(SequenceSet.parse(b"1,4"), uid=False), "3,9"),
        ([], ""),
    ]
    for uids, text in cases:
        assert sel.span(uids) == text
        if text:
            assert [u for lo, hi in uidset.parse(text).resolve(10) for u in range(lo, hi + 1) if u in sel.uids] == list(
                uids
            )
