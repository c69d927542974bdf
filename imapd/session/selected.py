"""The selected mailbox as one session sees it: its sequence-number map and
the updates from the change feed it has not announced yet.

Sequence numbers are this session's own: a message expunged elsewhere keeps
its number until the session may announce the EXPUNGE (never during FETCH,
STORE or SEARCH: RFC 3501 7.4.1, RFC 2180 4.1). New messages are announced
with EXISTS, flag changes with unsolicited FETCH FLAGS.
"""

from __future__ import annotations

import array
import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from imapd.protocol.sequence import SequenceSet
from imapd.session import update_contexts
from imapd.session.update_contexts import UpdateContext
from imapd.store_client import ChangeEvent, MessageMeta
from store.uidset import format_uids

SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")


def _without(uids: array.array[int], doomed: Iterable[int]) -> array.array[int]:
    gone = set(doomed)
    return array.array("I", (u for u in uids if u not in gone))


def _in_sorted(values: Sequence[int], value: int) -> bool:
    i = bisect.bisect_left(values, value)
    return i < len(values) and values[i] == value


def flag_list(flags: Iterable[str]) -> bytes:
    return b"(" + " ".join(flags).encode("utf-8", "replace") + b")"


@dataclass
class SelectedMailbox:
    name: str
    mailbox_id: int
    uidvalidity: int
    # ascending: uids[seq - 1]; an array (4 bytes a message, taken from the store's packed reply
    # without an object per UID: a 50,000-message SELECT)
    uids: array.array[int]
    modseq: int  # highest modseq this session has caught up with
    read_only: bool = False
    condstore: bool = False  # report MODSEQ in unsolicited FETCH
    qresync: bool = False  # report VANISHED instead of EXPUNGE
    gone: bool = False  # deleted or renamed elsewhere
    pending_expunged: set[int] = field(default_factory=set)
    pending_added: list[int] = field(default_factory=list)
    pending_flags: dict[int, MessageMeta] = field(default_factory=dict)
    # modseq of changes this session made itself and already reported
    own_modseq: dict[int, int] = field(default_factory=dict)
    saved_search: tuple[int, ...] = ()  # SEARCHRES "$" (UIDs)
    recent: set[int] = field(default_factory=set)  # \Recent to this session (RFC 3501 2.3.2)
    # UIDs [lo, hi) this session claimed as \Recent at SELECT: later arrivals in it are recent here.
    recent_range: tuple[int, int] = (0, 0)
    announced_recent: int = 0
    no_recent: bool = False  # IMAP4rev2 (RFC 9051): this session claims and shows no \Recent
    keywords: list[str] = field(default_factory=list)  # as announced in * FLAGS, in order
    added_metas: list[MessageMeta] = field(default_factory=list)  # new mail carrying keywords
    # CONTEXT=SEARCH/SORT (RFC 5267): searches kept up to date, and the UIDs whose match may have
    # changed since they were last brought up to date (new or re-flagged; kept only while contexts exist).
    contexts: list[UpdateContext] = field(default_factory=list)
    touched: set[int] = field(default_factory=set)
    touched_meta: dict[int, MessageMeta] = field(default_factory=dict)  # their latest flags, when the feed said

    # ---- FLAGS / PERMANENTFLAGS ------------------------------------------------
    def flags_lines(self) -> list[bytes]:
        flags = (*SYSTEM_FLAGS, *self.keywords)
        if self.read_only:
            permanent = b"* OK [PERMANENTFLAGS ()] Read-only mailbox\r\n"
        else:
            permanent = b"* OK [PERMANENTFLAGS " + flag_list((*flags, "\\*")) + b"] Flags permitted\r\n"
        return [b"* FLAGS " + flag_list(flags) + b"\r\n", permanent]

    def announce_keywords(self, flags: Iterable[str]) -> list[bytes]:
        """* FLAGS and PERMANENTFLAGS again when a keyword new to this session shows up
        (before any FETCH shows it)."""
        known = self.keywords
        new = [f for f in flags if f[:1] != "\\" and f not in known]
        if not new:
            return []
        for f in new:
            if f not in known:
                known.append(f)
        return self.flags_lines()

    # ---- the change feed ----------------------------------------------------
    def absorb(self, event: ChangeEvent) -> None:
        """Record an event from the feed; nothing is sent until `flush`."""
        if event.deleted or event.renamed:
            self.gone = True
            return
        if event.modseq <= self.modseq:
            return  # already in the snapshot this session started from
        seen_modseq, self.modseq = self.modseq, event.modseq
        last = self.uids[-1] if self.uids else 0
        lo, hi = self.recent_range
        for meta in event.added:
            if self.contexts:
                self.touched_meta[meta.uid] = meta
            if meta.uid > last and (not self.pending_added or meta.uid > self.pending_added[-1]):
                self.pending_added.append(meta.uid)
                if any(f[:1] != "\\" for f in meta.flags):
                    self.added_metas.append(meta)
                if lo <= meta.uid < hi:
                    self.recent.add(meta.uid)
        if event.expunged:
            # A catch-up after falling behind may carry tens of thousands of each: no list
            # membership test per UID.
            not_announced = self._drop_pending_added(event.expunged)
            for uid in event.expunged:
                if uid not in not_announced and self.seq_of(uid):
                    self.pending_expunged.add(uid)
                    self.pending_flags.pop(uid, None)
        for meta in event.flags:
            # A catch-up event (a resubscription's) may carry changes this session's snapshot
            # already held: a flag change at or below its modseq is not news to the client.
            if self.own_modseq.get(meta.uid, 0) >= meta.modseq or 0 < meta.modseq <= seen_modseq:
                continue
            if meta.uid not in self.pending_expunged:
                self.pending_flags[meta.uid] = meta

    def _drop_pending_added(self, expunged: Sequence[int]) -> set[int]:
        """Take expunged UIDs out of the new mail not announced yet; returns those taken."""
        pending = self.pending_added
        if not pending:
            return set()
        taken = {uid for uid in expunged if _in_sorted(pending, uid)}
        if taken:
            self.pending_added = [u for u in pending if u not in taken]
        return taken

    def holds(self, uid: int) -> bool:
        """The UID is in this session's map, or new mail it will announce."""
        return bool(self.seq_of(uid)) or _in_sorted(self.pending_added, uid)

    def note_added(self, uids: Iterable[int]) -> None:
        """Messages this session itself added (APPEND/COPY here): EXISTS before its OK."""
        for uid in sorted(uids):
            last = self.pending_added[-1] if self.pending_added else (self.uids[-1] if self.uids else 0)
            if uid > last:
                self.pending_added.append(uid)

    @property
    def quiet(self) -> bool:
        """Nothing to announce: `flush` would return no line (and change nothing)."""
        return (
            not self.pending_expunged
            and not self.pending_added
            and not self.pending_flags
            and not self.added_metas
            and not self.gone
            and not (self.contexts and self.touched)
            and len(self.recent) == self.announced_recent
        )

    def flush(self, *, allow_expunge: bool) -> list[bytes]:
        """Untagged responses for what changed, in an order clients can follow."""
        out: list[bytes] = []
        if allow_expunge and self.pending_expunged:
            doomed = sorted(self.pending_expunged)
            self.pending_expunged.clear()
            out.extend(update_contexts.expunge_lines(self.contexts, doomed, self.seq_of))
            if self.qresync:
                out.append(b"* VANISHED " + SequenceSet.from_numbers(doomed).to_bytes() + b"\r\n")
                self.uids = _without(self.uids, doomed)
            else:
                out.extend(self._expunge_lines(doomed))
            for uid in doomed:
                self.own_modseq.pop(uid, None)
                self.recent.discard(uid)
                self.touched.discard(uid)
        for meta in self.added_metas:
            out.extend(self.announce_keywords(meta.flags))
        self.added_metas.clear()
        for meta in self.pending_flags.values():
            out.extend(self.announce_keywords(meta.flags))
        if self.contexts:
            self.touched.update(self.pending_added)
            self.touched.update(self.pending_flags)
            self.touched_meta.update(self.pending_flags)
        if self.pending_added:
            self.uids.extend(self.pending_added)
            self.pending_added.clear()
            out.append(b"* %d EXISTS\r\n" % len(self.uids))
        if len(self.recent) != self.announced_recent:
            self.announced_recent = len(self.recent)
            out.append(b"* %d RECENT\r\n" % self.announced_recent)
        if self.pending_flags:
            for uid, meta in sorted(self.pending_flags.items()):
                seq = self.seq_of(uid)
                if seq:
                    out.append(self.flags_response(seq, meta, with_uid=self.condstore))
            self.pending_flags.clear()
        return out

    def flags_response(self, seq: int, meta: MessageMeta, *, with_uid: bool) -> bytes:
        flags = (*meta.flags, "\\Recent") if meta.uid in self.recent else meta.flags
        items = b"FLAGS " + flag_list(flags)
        if with_uid:
            items = b"UID %d " % meta.uid + items
        if self.condstore:
            items += b" MODSEQ (%d)" % meta.modseq
        return b"* %d FETCH (%s)\r\n" % (seq, items)

    def _expunge_lines(self, doomed: list[int]) -> list[bytes]:
        """`* n EXPUNGE` for the ascending UIDs `doomed` that are in the map, highest first (each
        number stays valid as the ones above go), and the map without them: one cut per run of
        consecutive numbers, not one move of the map's tail per message."""
        seqs = self._seqs(doomed)
        out = [b"* %d EXPUNGE\r\n" % seq for seq in reversed(seqs)]
        if isinstance(seqs, range):
            del self.uids[seqs.start - 1 : seqs.stop - 1]
            return out
        end = len(seqs)
        while end:
            start = end - 1
            while start and seqs[start - 1] == seqs[start] - 1:
                start -= 1
            del self.uids[seqs[start] - 1 : seqs[end - 1]]
            end = start
        return out

    def _seqs(self, doomed: list[int]) -> Sequence[int]:
        """The sequence numbers of the ascending UIDs `doomed` that are in the map, ascending: a
        range when they are a run of the map (EXPUNGE of a block of \\Deleted messages; one
        compare of the map's slice instead of a bisect per UID)."""
        if not doomed:
            return ()
        start = bisect.bisect_left(self.uids, doomed[0])
        if self.uids[start : start + len(doomed)] == array.array("I", doomed):
            return range(start + 1, start + len(doomed) + 1)
        return [seq for seq in map(self.seq_of, doomed) if seq]

    # ---- numbers ----------------------------------------------------------------
    def seq_of(self, uid: int) -> int:
        """Sequence number of a UID in this session's map, 0 if unknown."""
        uids = self.uids
        i = bisect.bisect_left(uids, uid)
        return i + 1 if i < len(uids) and uids[i] == uid else 0

    @property
    def exists(self) -> int:
        return len(self.uids)

    def uids_for(self, sequence_set: SequenceSet, *, uid: bool) -> Sequence[int]:
        """UIDs a command addresses, in this session's view (ascending, distinct): slices of
        the map, since the resolved ranges are sorted and merged."""
        if sequence_set.saved:
            return [u for u in self.saved_search if self.seq_of(u)]
        out = array.array("I")
        if uid:
            if not self.uids:
                return out
            for lo, hi in sequence_set.resolve(self.uids[-1]):
                out.extend(self.uids[bisect.bisect_left(self.uids, lo) : bisect.bisect_right(self.uids, hi)])
            return out
        for lo, hi in sequence_set.resolve(len(self.uids)):
            out.extend(self.uids[lo - 1 : hi])
        return out

    def span(self, uids: Sequence[int]) -> str:
        """A UID set for the store naming `uids` (ascending UIDs of this map): "first:last"
        when they are a run of the map (the store has no other message in between: UIDs only
        grow, and what it expunged is not answered), else every UID."""
        if not uids:
            return ""
        if len(uids) == 1:
            return str(uids[0])  # "60", not "60:60": the store parses a lone UID without its pattern
        start = bisect.bisect_left(self.uids, uids[0])
        if isinstance(uids, array.array) and self.uids[start : start + len(uids)] == uids:  # one memcmp
            return f"{uids[0]}:{uids[-1]}"
        return format_uids(uids)

    def seq_out_of_range(self, sequence_set: SequenceSet) -> bool:
        """A message sequence number beyond EXISTS is a client error (BAD)."""
        return not sequence_set.saved and sequence_set.max_explicit() > len(self.uids)

    def note_own_flags(self, updated: Iterable[MessageMeta]) -> None:
        for meta in updated:
            self.own_modseq[meta.uid] = meta.modseq
            self.pending_flags.pop(meta.uid, None)
            if self.contexts:
                self.touched.add(meta.uid)
                self.touched_meta[meta.uid] = meta

    def note_own_expunge(self, uids: Iterable[int]) -> list[bytes]:
        """Our own EXPUNGE/MOVE: announce at once, in this session's numbering."""
        doomed = sorted(set(uids))
        out = update_contexts.expunge_lines(self.contexts, doomed, self.seq_of) if self.contexts else []
        if self.qresync:
            present = [self.uids[seq - 1] for seq in self._seqs(doomed)]
            if present:
                out.append(b"* VANISHED " + SequenceSet.from_numbers(present).to_bytes() + b"\r\n")
            self.uids = _without(self.uids, present)
        else:
            out.extend(self._expunge_lines(doomed))
        # Set operations in C rather than five look-ups per UID (an EXPUNGE of 1,000).
        gone = set(doomed)
        self.recent -= gone
        self.touched -= gone
        self.pending_expunged -= gone
        if self.pending_flags:
            for uid in doomed:
                self.pending_flags.pop(uid, None)
        if self.own_modseq:
            for uid in doomed:
                self.own_modseq.pop(uid, None)
        # Messages we never announced that our EXPUNGE removed: never announce them.
        if self.pending_added:
            self.pending_added = [u for u in self.pending_added if u not in gone]
        return out
