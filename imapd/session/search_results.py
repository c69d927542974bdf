"""SEARCHRES (RFC 5182): what RETURN (SAVE) keeps as "$".

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
