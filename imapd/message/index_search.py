"""SEARCH answered from the store's flag and header indexes, as sets of UIDs.

`plan` says whether a key tree can be answered from the index columns (flags
but \\Recent, keywords, sizes, MODSEQ, UID and sequence sets, internal dates,
SUBJECT/FROM/TO/CC/BCC substrings, and TEXT/BODY from the store's full-text
index) and which header and text queries to send with the scan.
`IndexTable.evaluate` then gives the same answer `search_eval` gives message
by message (a test compares them), with set operations over whole columns
instead of one evaluation per message.
"""

from __future__ import annotations

import bisect
import datetime
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, assert_never

from imapd.message.search_eval import SearchContext
from imapd.protocol.search_spec import (
    AgeKey,
    AgeRelation,
    AllKey,
    AndKey,
    BodyKey,
    DateField,
    DateKey,
    DateRelation,
    FlagKey,
    HeaderKey,
    ModSeqKey,
    NotKey,
    ObjectIdKey,
    OrKey,
    SearchKey,
    SequenceKey,
    SizeKey,
    SizeRelation,
    TextKey,
    walk,
)
from imapd.protocol.sequence import SequenceSet
from mailparse.search_fields import indexed_needle

_EPOCH_ORDINAL: Final = datetime.date(1970, 1, 1).toordinal()
_MAX_OFFSET_MINUTES: Final = 24 * 60 - 1  # as imapd.message.dates clamps zones
_FIRST_SECOND: Final = -62135596800  # 0001-01-01T00:00:00Z
_LAST_SECOND: Final = 253402300799  # 9999-12-31T23:59:59Z


@dataclass(frozen=True, slots=True)
class IndexPlan:
    """How to answer a key tree from the index: the header queries, in the order of `walk`."""

    header_queries: tuple[tuple[int, bytes], ...]
    needs_sizes_dates: bool
    text_queries: tuple[tuple[str, bool], ...] = ()  # (casefolded needle, body only)
    needs_modseqs: bool = False  # a MODSEQ key: the scan must bring the MODSEQ column

    def query_of(self, key: HeaderKey) -> int:
        wanted = indexed_needle(key.field, key.value)
        assert wanted is not None
        return self.header_queries.index(wanted)


def plan(key: SearchKey) -> IndexPlan | None:
    """The plan when every key of the tree can be answered from the index, else None."""
    queries: list[tuple[int, bytes]] = []
    texts: list[tuple[str, bool]] = []
    sizes_dates = modseqs = False
    for node in walk(key):
        if isinstance(node, (BodyKey, TextKey)):
            wanted_text = (node.value.casefold(), isinstance(node, BodyKey))
            if wanted_text not in texts:
                texts.append(wanted_text)
        if isinstance(node, FlagKey) and node.flag.lower() == "\\recent":
            return None  # \\Recent is the session's, not the store's
        if isinstance(node, AgeKey):
            sizes_dates = True
        if isinstance(node, DateKey):
            if node.field is not DateField.INTERNAL:
                return None
            sizes_dates = True
        if isinstance(node, SizeKey):
            sizes_dates = True
        if isinstance(node, ModSeqKey):
            modseqs = True
        if isinstance(node, ObjectIdKey):
            return None  # the ids are not in the index columns
        if isinstance(node, SequenceKey) and not isinstance(node.matcher, SequenceSet):
            return None
        if isinstance(node, HeaderKey):
            wanted = indexed_needle(node.field, node.value)
            if wanted is None:
                return None
            if wanted not in queries:
                queries.append(wanted)
    return IndexPlan(tuple(queries), sizes_dates, tuple(texts), modseqs)


def flag_filter(key: SearchKey) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(flags every match holds, flags no match holds) from the flag keys at the top of `key`
    (itself or the direct parts of an AND): the store may then send only those messages'
    columns. Evaluating the whole key on such a table gives the same answer, since every
    other key is decided message by message and the AND keeps only such messages anyway."""
    parts = key.keys if isinstance(key, AndKey) else (key,)
    held: list[str] = []
    absent: list[str] = []
    for part in parts:
        if isinstance(part, FlagKey):
            (held if part.present else absent).append(part.flag)
    return tuple(held), tuple(absent)


def _day(unix_seconds: int, tz_offset_minutes: int) -> int:
    """Days since 1970-01-01 of the internal date in its own zone (imapd.message.dates)."""
    offset = max(-_MAX_OFFSET_MINUTES, min(_MAX_OFFSET_MINUTES, tz_offset_minutes))
    if not _FIRST_SECOND <= unix_seconds + offset * 60 <= _LAST_SECOND:
        unix_seconds = 0  # beyond what datetime holds: dates.py falls back to the epoch too
    return (unix_seconds + offset * 60) // 86400


class IndexTable:
    """The columns of one scan, for the messages this session may see (ascending UIDs)."""

    def __init__(  # noqa: PLR0917 - the parallel columns of one scan
        self,
        uids: Sequence[int],
        flag_ids: Sequence[int],
        modseqs: Sequence[int],
        sizes: Sequence[int],
        dates: Sequence[int],
        tz_offsets: Sequence[int],
    ) -> None:
        self.uids = uids
        self.flag_ids = flag_ids
        self.modseqs = modseqs
        self.sizes = sizes
        self.dates = dates
        self.tz_offsets = tz_offsets
        self.flag_sets: dict[int, tuple[str, ...]] = {}
        self.header_hits: tuple[frozenset[int], ...] = ()
        self.text_hits: tuple[frozenset[int], ...] = ()
        self._all: set[int] | None = None

    def _everything(self) -> set[int]:
        if self._all is None:
            self._all = set(self.uids)
        return set(self._all)

    def evaluate(
        self, key: SearchKey, the_plan: IndexPlan, context: SearchContext, session_uids: Sequence[int]
    ) -> set[int]:
        """UIDs matching `key`; `session_uids` gives sequence numbers (uids[seq - 1])."""
        return self._eval(key, the_plan, context, session_uids)

    def _eval(self, key: SearchKey, p: IndexPlan, context: SearchContext, session_uids: Sequence[int]) -> set[int]:
        if isinstance(key, AndKey):
            result: set[int] | None = None
            for k in key.keys:
                part = self._eval(k, p, context, session_uids)
                result = part if result is None else result & part
                if not result:
                    return set()
            return result if result is not None else self._everything()
        if isinstance(key, OrKey):
            return self._eval(key.left, p, context, session_uids) | self._eval(key.right, p, context, session_uids)
        if isinstance(key, NotKey):
            return self._everything() - self._eval(key.key, p, context, session_uids)
        if isinstance(key, AllKey):
            return self._everything()
        if isinstance(key, FlagKey):
            wanted = key.flag.lower()
            ids = {
                fid for fid, flags in self.flag_sets.items() if any(f.lower() == wanted for f in flags) == key.present
            }
            return {u for u, fid in zip(self.uids, self.flag_ids, strict=True) if fid in ids}
        if isinstance(key, SizeKey):
            n = key.size
            if key.relation is SizeRelation.LARGER:
                return {u for u, s in zip(self.uids, self.sizes, strict=True) if s > n}
            return {u for u, s in zip(self.uids, self.sizes, strict=True) if s < n}
        if isinstance(key, ModSeqKey):
            m = key.modseq
            return {u for u, ms in zip(self.uids, self.modseqs, strict=True) if ms >= m}
        if isinstance(key, SequenceKey):
            return self._sequence(key, context, session_uids)
        if isinstance(key, DateKey):
            wanted_day = key.date.toordinal() - _EPOCH_ORDINAL
            days = ((u, _day(d, tz)) for u, d, tz in zip(self.uids, self.dates, self.tz_offsets, strict=True))
            if key.relation is DateRelation.BEFORE:
                return {u for u, day in days if day < wanted_day}
            if key.relation is DateRelation.ON:
                return {u for u, day in days if day == wanted_day}
            return {u for u, day in days if day >= wanted_day}
        if isinstance(key, AgeKey):
            # WITHIN (RFC 5032), as search_eval: YOUNGER is "since now - n", OLDER "at or before".
            limit = context.now - key.seconds
            if key.relation is AgeRelation.YOUNGER:
                return {u for u, d in zip(self.uids, self.dates, strict=True) if d >= limit}
            return {u for u, d in zip(self.uids, self.dates, strict=True) if d <= limit}
        if isinstance(key, HeaderKey):
            return set(self.header_hits[p.query_of(key)])
        if isinstance(key, (BodyKey, TextKey)):
            at = p.text_queries.index((key.value.casefold(), isinstance(key, BodyKey)))
            return self._everything() & self.text_hits[at]
        if isinstance(key, ObjectIdKey):
            raise TypeError("plan() keeps object-id keys off the index")
        assert_never(key)

    def _sequence(self, key: SequenceKey, context: SearchContext, session_uids: Sequence[int]) -> set[int]:
        matcher = key.matcher
        assert isinstance(matcher, SequenceSet)
        if matcher.saved:
            return self._everything() & context.saved_uids
        out: set[int] = set()
        if key.uid:
            for lo, hi in matcher.resolve(context.largest_uid):
                out.update(self.uids[bisect.bisect_left(self.uids, lo) : bisect.bisect_right(self.uids, hi)])
            return out
        for lo, hi in matcher.resolve(context.largest_seq):
            out.update(session_uids[lo - 1 : hi])
        return out & self._everything()
