"""CONTEXT=SEARCH / CONTEXT=SORT (RFC 5267 4.3): the searches a session keeps up to date.

A SEARCH or SORT with RETURN (UPDATE) leaves an `UpdateContext` on the
selected mailbox: its program, and the UIDs it matches (mailbox order for
SEARCH, sort order for SORT). As the mailbox changes, the session reports the
difference as unsolicited `* ESEARCH (TAG "t") [UID] REMOVEFROM (...) ADDTO (...)`:
removals of expunged messages before their EXPUNGE (their numbers still
valid), additions after the EXISTS that numbers them. SEARCH contexts use
context position 0; SORT contexts give the position in the sorted list.

This module is pure: the diff and its wire form. context_commands decides
which messages now match (a store search) and calls it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final

from imapd.protocol.search_spec import SearchProgram
from imapd.uid_set import format_uids
from mailparse.sort_spec import SortCriterion

# Contexts one session may keep at once, and the UIDs they may hold together (~36 bytes each
# in a list): more are refused with NO [NOUPDATE] (RFC 5267 4.3.1), the search still answers.
MAX_CONTEXTS: Final = 8
MAX_CONTEXT_UIDS: Final = 100_000


@dataclass
class UpdateContext:
    tag: str
    uid: bool  # report UIDs (UID SEARCH / UID SORT) or sequence numbers
    program: SearchProgram
    criteria: tuple[tuple[SortCriterion, bool], ...] | None  # None: a SEARCH context
    result: list[int] = field(default_factory=list)  # UIDs in result order

    @property
    def sorted(self) -> bool:
        return self.criteria is not None


def tag_in_use(contexts: Iterable[UpdateContext], tag: str) -> bool:
    """RFC 5267 4.3: UPDATE with the tag of a live context is answered BAD."""
    return any(ctx.tag == tag for ctx in contexts)


def open_context(contexts: list[UpdateContext], ctx: UpdateContext) -> bytes:
    """Keep `ctx` up to date; b"" or, past the limit, the untagged NO [NOUPDATE] refusing it."""
    if len(contexts) >= MAX_CONTEXTS:
        return b'* NO [NOUPDATE "' + ctx.tag.encode() + b'"] Too many update contexts; CANCELUPDATE one\r\n'
    if sum(len(c.result) for c in contexts) + len(ctx.result) > MAX_CONTEXT_UIDS:
        return b'* NO [NOUPDATE "' + ctx.tag.encode() + b'"] Update contexts would hold too many messages\r\n'
    contexts.append(ctx)
    return b""


def in_order(numbers: list[int]) -> bytes:
    """A sequence set listing `numbers` in the given order: only ascending runs are joined (RFC 5267 3.2)."""
    parts: list[bytes] = []
    i = 0
    while i < len(numbers):
        j = i
        while j + 1 < len(numbers) and numbers[j + 1] == numbers[j] + 1:
            j += 1
        parts.append(b"%d" % numbers[i] if i == j else b"%d:%d" % (numbers[i], numbers[j]))
        i = j + 1
    return b",".join(parts)


Pairs = list[tuple[int, list[int]]]  # (context position, UIDs in order)


def remove(ctx: UpdateContext, gone: set[int]) -> Pairs:
    """Take `gone` out of the result; the REMOVEFROM pairs that say so."""
    if not gone.intersection(ctx.result):
        return []
    if not ctx.sorted:
        removed = [u for u in ctx.result if u in gone]
        ctx.result = [u for u in ctx.result if u not in gone]
        return [(0, removed)]
    pairs: Pairs = []
    kept: list[int] = []
    for uid in ctx.result:
        if uid not in gone:
            kept.append(uid)
            continue
        position = len(kept) + 1  # where it sits once the earlier removals are applied
        if pairs and pairs[-1][0] == position:
            pairs[-1][1].append(uid)  # the next one moved up into the same position
        else:
            pairs.append((position, [uid]))
    ctx.result = kept
    return pairs


def add(ctx: UpdateContext, new_result: list[int]) -> Pairs:
    """Grow the result to `new_result` (a superset, in result order); the ADDTO pairs that say so.

    For SORT the current result is a subsequence of `new_result` (sort keys do not change), so
    inserting the new members in ascending final position puts each where it belongs.
    """
    present = set(ctx.result)
    added = [u for u in new_result if u not in present]
    if not added:
        return []
    ctx.result = list(new_result)
    if not ctx.sorted:
        return [(0, added)]
    pairs: Pairs = []
    for index, uid in enumerate(new_result):
        if uid in present:
            continue
        position = index + 1
        if pairs and pairs[-1][0] + len(pairs[-1][1]) == position:
            pairs[-1][1].append(uid)
        else:
            pairs.append((position, [uid]))
    return pairs


def update_line(ctx: UpdateContext, removed: Pairs, added: Pairs, seq_of: Callable[[int], int]) -> bytes:
    """The unsolicited ESEARCH for one context's changes (b"" if none)."""
    if not removed and not added:
        return b""
    line = b'* ESEARCH (TAG "' + ctx.tag.encode() + b'")'
    if ctx.uid:
        line += b" UID"
    if removed:
        line += b" REMOVEFROM (" + _pairs(ctx, removed, seq_of) + b")"
    if added:
        line += b" ADDTO (" + _pairs(ctx, added, seq_of) + b")"
    return line + b"\r\n"


def _pairs(ctx: UpdateContext, pairs: Pairs, seq_of: Callable[[int], int]) -> bytes:
    out: list[bytes] = []
    for position, uids in pairs:
        numbers = uids if ctx.uid else [seq_of(u) for u in uids]
        # SEARCH results are a set (shortest form); SORT keeps the order.
        rendered = in_order(numbers) if ctx.sorted else format_uids(numbers).encode()
        out.append(b"%d " % position + rendered)
    return b" ".join(out)


def expunge_lines(
    contexts: Iterable[UpdateContext], doomed: Iterable[int], seq_of: Callable[[int], int]
) -> list[bytes]:
    """REMOVEFROM for expunged messages, to send before their EXPUNGE/VANISHED."""
    gone = set(doomed)
    lines = []
    for ctx in contexts:
        line = update_line(ctx, remove(ctx, gone), [], seq_of)
        if line:
            lines.append(line)
    return lines
