"""THREAD's input as flat typed arrays: what the algorithm reads of each message, with the
Message-IDs and base subjects interned to small ints.

At a million messages the per-message objects of the input (an int per number and date, a
str per subject, a bytes per Message-ID and per reference, a tuple per References list) were
most of THREAD's peak, and jemalloc keeps the metadata of every slab such a peak made
(issue 17). Here a message costs a few array slots; the only objects left per message are the
distinct Message-IDs, held by the builder's table while reading and dropped before threading.

Interning keeps every answer: a Message-ID is only ever compared for equality, and a
subject's rank orders like the subject (ranks are given in sorted order once all are known).
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import accumulate
from operator import attrgetter
from typing import Final, TypeVar

from mailparse.sort_keys import SortKeys, ThreadFields

NO_ID: Final = -1
T = TypeVar("T")


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
    subjects: array[int]  # indexes into subject_names (0 is "")
    subject_names: list[str]
    replies: bytearray
    ids: array[int]  # the interned Message-ID, NO_ID for none
    ref_starts: array[int]
    ref_counts: array[int]
    refs: array[int]
    id_count: int

    def __len__(self) -> int:
        return len(self.numbers)

    @classmethod
    def of(cls, columns: ThreadColumns) -> ThreadInput:
        builder = ThreadInputBuilder()
        builder.add_columns(columns)
        return builder.build()

    @property
    def empty_subject(self) -> int:
        """The index of "" (always among the names: a dummy without messages has it)."""
        return 0

    def subject_ranks(self) -> array[int]:
        """Each message's subject as its rank among the distinct subjects: ranks order as the
        subjects do (ORDEREDSUBJECT sorts by them; the other algorithms only compare)."""
        names = self.subject_names
        rank: array[int] = array("q", bytes(8 * len(names)))
        for position, index in enumerate(sorted(range(len(names)), key=names.__getitem__)):
            rank[index] = position
        return array("q", map(rank.__getitem__, self.subjects))


class ThreadInputBuilder:
    """Appends messages in ascending number order; `replace` fills a message added with
    placeholder fields (its header read later), `build` hands the arrays over."""

    __slots__ = (
        "_ids",
        "_subject_ids",
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
        self._subject_ids: dict[str, int] = {"": 0}
        self.numbers: array[int] = array("q")
        self.sents: array[int] = array("q")
        self.subjects: array[int] = array("q")
        self.replies = bytearray()
        self.message_ids: array[int] = array("q")
        self.ref_starts: array[int] = array("q")
        self.ref_counts: array[int] = array("q")
        self.refs: array[int] = array("q")

    def __len__(self) -> int:
        return len(self.numbers)

    def _id(self, message_id: bytes | None) -> int:
        ids = self._ids
        found = ids.get(message_id)
        if found is None:
            found = ids[message_id] = len(ids) - 1
        return found

    def _subject(self, subject: str) -> int:
        table = self._subject_ids
        found = table.get(subject)
        if found is None:
            found = table[subject] = len(table)
        return found

    def add_columns(self, columns: ThreadColumns) -> None:
        """Append the messages of `columns` (C loops where there are: each distinct value is
        interned once, then every message's value is a table lookup)."""
        # (iter: an array of another kind, such as a session's UIDs, is refused by extend)
        self.numbers.extend(iter(columns.numbers))
        self.sents.extend(iter(columns.sents))
        self.replies.extend(columns.replies)
        subject_ids, ids = self._subject_ids, self._ids
        _intern(subject_ids, columns.subjects, first=0)
        self.subjects.extend(map(subject_ids.__getitem__, columns.subjects))
        refs = [ref for chain in columns.parent_ids for ref in chain]
        _intern(ids, columns.message_ids, first=-1)
        _intern(ids, refs, first=-1)
        self.message_ids.extend(map(ids.__getitem__, columns.message_ids))
        counts = list(map(len, columns.parent_ids))
        self.ref_counts.extend(counts)
        self.ref_starts.extend(accumulate(counts[:-1], initial=len(self.refs)))
        self.refs.extend(map(ids.__getitem__, refs))

    def replace(self, i: int, fields: ThreadFields) -> None:
        """Message i's fields (its references appended at the end of the refs column)."""
        sent, subject, reply, message_id, parent_ids = fields
        self.sents[i] = sent
        self.subjects[i] = self._subject(subject)
        self.replies[i] = reply
        self.message_ids[i] = self._id(message_id)
        refs = self.refs
        start = len(refs)
        refs.extend(map(self._id, parent_ids))
        self.ref_starts[i] = start
        self.ref_counts[i] = len(refs) - start

    def keep(self, kept: Sequence[int]) -> None:
        """Only the messages at the positions `kept` (ascending) stay."""
        for name in ("numbers", "sents", "subjects", "message_ids", "ref_starts", "ref_counts"):
            column: array[int] = getattr(self, name)
            setattr(self, name, array("q", [column[i] for i in kept]))
        self.replies = bytearray(self.replies[i] for i in kept)

    def renumber(self, numbers: Sequence[int]) -> None:
        """Other numbers for the same messages (sequence numbers for UIDs), ascending too."""
        assert len(numbers) == len(self.numbers)
        self.numbers = array("q", numbers)

    def build(self) -> ThreadInput:
        """The input; the builder's tables are dropped (the Message-IDs' bytes go with them)."""
        names = list(self._subject_ids)  # in index order (dicts keep insertion order)
        id_count = len(self._ids) - 1  # (None is NO_ID)
        self._ids, self._subject_ids = {None: NO_ID}, {"": 0}
        return ThreadInput(
            self.numbers,
            self.sents,
            self.subjects,
            names,
            self.replies,
            self.message_ids,
            self.ref_starts,
            self.ref_counts,
            self.refs,
            id_count,
        )


def _intern(table: dict[T, int], values: Iterable[T], *, first: int) -> None:
    """Number each value of `values` not in `table` yet, in order of appearance, the first new
    one `len(table) + first`."""
    fresh = [value for value in dict.fromkeys(values) if value not in table]
    start = len(table) + first
    table.update(zip(fresh, range(start, start + len(fresh)), strict=True))
