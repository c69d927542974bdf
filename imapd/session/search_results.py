"""What SEARCH and SORT return under RETURN (...): the ESEARCH line (RFC 4731,
ESORT and PARTIAL of RFC 5267) and what SAVE keeps as "$" (SEARCHRES, RFC 5182).

The saved result is a set of UIDs held by the selected mailbox
(`SelectedMailbox.saved_search`); "$" names those messages in FETCH, STORE,
COPY, MOVE, SEARCH and the UID variants. It is emptied on SELECT/EXAMINE (a
new SelectedMailbox), by a SAVE whose command fails with NO, and loses
messages as they are expunged (`SelectedMailbox.uids_for` keeps only UIDs
still in the session's map).
"""

from __future__ import annotations

from collections.abc import Sequence

from imapd.protocol import commands as c
from imapd.session.update_contexts import in_order
from store.uidset import format_uids


def saving(returns: frozenset[c.SearchReturn] | None) -> bool:
    return returns is not None and c.SearchReturn.SAVE in returns


def saved_result(returns: frozenset[c.SearchReturn], uids: Sequence[int]) -> tuple[int, ...]:
    """The UIDs RETURN (SAVE ...) keeps, `uids` in result order (message order for SEARCH,
    sort order for SORT).

    RFC 5182 2.4: with MIN and/or MAX but neither ALL nor COUNT, only the message(s)
    MIN/MAX return are saved; otherwise the whole result.
    """
    only_ends = not returns & {c.SearchReturn.ALL, c.SearchReturn.COUNT} and returns & {
        c.SearchReturn.MIN,
        c.SearchReturn.MAX,
    }
    if not only_ends or not uids:
        return tuple(sorted(uids))
    kept: set[int] = set()
    if c.SearchReturn.MIN in returns:
        kept.add(uids[0])
    if c.SearchReturn.MAX in returns:
        kept.add(uids[-1])
    return tuple(sorted(kept))


def esearch_line(
    tag: str,
    *,
    uid: bool,
    returns: frozenset[c.SearchReturn],
    numbers: list[int],
    modseq: int,
    partial: tuple[int, int] | None,
    sort_order: bool,
) -> bytes:
    """`* ESEARCH (TAG "t") [UID] ...` for `numbers` in result order.

    SEARCH results are a set (ALL in the shortest form); SORT results keep their order
    (ESORT: MIN/MAX are the first/last in sort order, ranges only for ascending runs).
    """
    render = in_order if sort_order else (lambda ns: format_uids(ns).encode())
    line = b'* ESEARCH (TAG "' + tag.encode() + b'")'
    if uid:
        line += b" UID"
    if numbers:
        if c.SearchReturn.MIN in returns:
            line += b" MIN %d" % (numbers[0] if sort_order else min(numbers))
        if c.SearchReturn.MAX in returns:
            line += b" MAX %d" % (numbers[-1] if sort_order else max(numbers))
        if c.SearchReturn.ALL in returns:
            line += b" ALL " + render(numbers)
    if partial is not None:
        lo, hi = partial
        window = numbers[lo - 1 : hi]
        line += b" PARTIAL (%d:%d " % (lo, hi) + (render(window) if window else b"NIL") + b")"
    if c.SearchReturn.COUNT in returns:
        line += b" COUNT %d" % len(numbers)
    if modseq:
        line += b" MODSEQ %d" % modseq
    return line + b"\r\n"
