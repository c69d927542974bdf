"""THREAD's input as flat typed arrays: what the algorithm reads of each message, with the
Message-IDs interned to ints.

At a million messages the per-message objects of the input (an int per number and date, a
bytes per Message-ID and per reference, a tuple per References list) were most of THREAD's
peak, and jemalloc keeps the metadata of every slab such a peak made (issue 17). Here a
message costs a few array slots and its subject; the distinct Message-IDs are held by the
builder's table while reading and dropped before threading. Interning keeps every answer: a
Message-ID is only ever compared for equality. (Subjects stay strings: they are sorted by
ORDEREDSUBJECT, and interning them cost THREAD a third more time at 50,000 for no memory
where they are distinct.)
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate, count
from operator import attrgetter
from typing import Final

from mailparse.sort_keys import SortKeys, ThreadFields

NO_ID: Final = -1


@dataclass(frozen=True, slots=True)
class ThreadColumns:
    """What THREAD reads of each message, one list per field, aligned: `numbers` ascending."""

    numbers: Sequence[int]
    sents: Sequence[int]
    subjects: Sequence[str]  # base subject, i;unicode-casemap key
    replies: Sequence[bool]
    message_ids: Sequence[bytes | None]
    parent_ids: Sequence[tuple[bytes, ...]]

    @classmethod
    def of(cls, numbers: Sequence[int], keys: Sequence[SortKeys]) -> ThreadColumns:
        return cls(
            numbers,
            list(map(attrgetter("sent"), keys)),
            list(map(attrgetter("subject"), keys)),
            list(map(attrgetter("subject_reply"), keys)),
            list(map(attrgetter("message_id"), keys)),
            list(map(attrgetter("parent_ids"), keys)),
        )


@dataclass(frozen=True, slots=True)
class ThreadInput:
    """Columns aligned by message, `numbers` ascending. A message's references are
    `refs[ref_starts[i] : ref_starts[i] + ref_counts[i]]` (oldest first, the parent last)."""

    numbers: array[int]
    sents: array[int]
    subjects: list[str]  # base subject, i;unicode-casemap key
    replies: bytearray
    ids: array[int]  # the interned Message-ID, NO_ID for none
    ref_starts: array[int]
    ref_counts: array[int]
    refs: array[int]
    id_count: int  # every interned Message-ID is below it

    def __len__(self) -> int:
        return len(self.numbers)

    @classmethod
    def of(cls, columns: ThreadColumns) -> ThreadInput:
        builder = ThreadInputBuilder()
        builder.add_columns(columns)
        return builder.build()


class ThreadInputBuilder:
    """Appends messages in ascending number order; `replace` fills a message added with
    placeholder fields (its header read later), `build` hands the arrays over."""

    __slots__ = (
        "_ids",
        "_next_id",
        "message_ids",
        "numbers",
        "ref_counts",
        "ref_starts",
        "refs",
        "replies",
        "sents",
        "subjects",
    )

    def __init__(self) -> None:
        self._ids: dict[bytes | None, int] = {None: NO_ID}
        self._next_id = 0
        self.numbers: array[int] = array("q")
        self.sents: array[int] = array("q")
        self.subjects: list[str] = []
        self.replies = bytearray()
        self.message_ids: array[int] = array("q")
        self.ref_starts: array[int] = array("q")
        self.ref_counts: array[int] = array("q")
        self.refs: array[int] = array("q")

    def __len__(self) -> int:
        return len(self.numbers)

    def _id(self, message_id: bytes | None) -> int:
        found = self._ids.setdefault(message_id, self._next_id)
        if found == self._next_id:
            self._next_id += 1
        return found

    def add_columns(self, columns: ThreadColumns) -> None:
        """Append the messages of `columns` (C loops where there are)."""
        if not columns.numbers:
            return  # (accumulate's initial value would add a start for no message)
        # (iter: an array of another kind, such as a session's UIDs, is refused by extend)
        self.numbers.extend(iter(columns.numbers))
        self.sents.extend(iter(columns.sents))
        self.replies.extend(columns.replies)
        self.subjects += columns.subjects
        ids = self._ids
        # One dict call per value: setdefault numbers a new one from the counter (a value seen
        # before keeps its number, so the numbers have gaps; id_count bounds them all).
        fresh = count(self._next_id)
        self.message_ids.extend(map(ids.setdefault, columns.message_ids, fresh))
        counts = list(map(len, columns.parent_ids))
        self.ref_counts.extend(counts)
        self.ref_starts.extend(accumulate(counts[:-1], initial=len(self.refs)))
        self.refs.extend(map(ids.setdefault, [ref for chain in columns.parent_ids for ref in chain], fresh))
        self._next_id = next(fresh)

    def replace(self, i: int, fields: ThreadFields) -> None:
        """Message i's fields (its references appended at the end of the refs column)."""
        sent, subject, reply, message_id, parent_ids = fields
        self.sents[i] = sent
        self.subjects[i] = subject
        self.replies[i] = reply
        self.message_ids[i] = self._id(message_id)
        refs = self.refs
        start = len(refs)
        refs.extend(map(self._id, parent_ids))
        self.ref_starts[i] = start
        self.ref_counts[i] = len(refs) - start

    def keep(self, kept: Sequence[int]) -> None:
        """Only the messages at the positions `kept` (ascending) stay."""
        self.subjects = [self.subjects[i] for i in kept]
        for name in ("numbers", "sents", "message_ids", "ref_starts", "ref_counts"):
            column: array[int] = getattr(self, name)
            setattr(self, name, array("q", [column[i] for i in kept]))
        self.replies = bytearray(self.replies[i] for i in kept)

    def renumber(self, numbers: Sequence[int]) -> None:
        """Other numbers for the same messages (sequence numbers for UIDs), ascending too."""
        assert len(numbers) == len(self.numbers)
        self.numbers = array("q", numbers)

    def build(self) -> ThreadInput:
        """The input; the builder's tables are dropped (the Message-IDs' bytes go with them)."""
        id_count = self._next_id
        self._ids, self._next_id = {None: NO_ID}, 0
        return ThreadInput(
            self.numbers,
            self.sents,
            self.subjects,
            self.replies,
            self.message_ids,
            self.ref_starts,
            self.ref_counts,
            self.refs,
            id_count,
        )
