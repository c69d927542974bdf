"""Sequence sets ("1:3,5,7:*", "$") as typed values.

Parsed once per command; `resolve(largest)` gives merged inclusive ranges with
"*" replaced by the largest number in use, `contains` answers SEARCH's
question (it satisfies search_spec.SequenceMatcher), and `from_numbers`
compresses numbers for responses ("1:3,5").
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from imapd.protocol.errors import ParseError

# A number in a set: a positive int, or None for "*".
SeqNumber = int | None

_MAX_NUMBER = 0xFFFFFFFF  # nz-number is 32-bit unsigned (RFC 3501 4.2)


@dataclass(frozen=True, slots=True)
class SeqRange:
    """start:end as written (either may be "*" = None); a single number has start == end."""

    start: SeqNumber
    end: SeqNumber

    def bounds(self, largest: int) -> tuple[int, int]:
        lo = largest if self.start is None else self.start
        hi = largest if self.end is None else self.end
        return (lo, hi) if lo <= hi else (hi, lo)


@dataclass(frozen=True, slots=True)
class SequenceSet:
    """A sequence set; `saved` is SEARCHRES's "$" (the saved search result, RFC 5182)."""

    ranges: tuple[SeqRange, ...]
    saved: bool = False

    @classmethod
    def parse(cls, text: bytes) -> SequenceSet:
        """Parse the wire form; raises ParseError."""
        if text == b"$":
            return cls((), saved=True)
        if not text:
            raise ParseError("empty sequence set")
        ranges: list[SeqRange] = []
        for part in text.split(b","):
            first, colon, second = part.partition(b":")
            start = _number(first)
            end = _number(second) if colon else start
            ranges.append(SeqRange(start, end))
        return cls(tuple(ranges))

    @classmethod
    def from_numbers(cls, numbers: Iterable[int]) -> SequenceSet:
        """The most compact set for these numbers (sorted, runs merged)."""
        ordered = sorted(set(numbers))
        ranges: list[SeqRange] = []
        i = 0
        while i < len(ordered):
            j = i
            while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
                j += 1
            ranges.append(SeqRange(ordered[i], ordered[j]))
            i = j + 1
        return cls(tuple(ranges))

    @classmethod
    def from_ranges(cls, ranges: Iterable[tuple[int, int]]) -> SequenceSet:
        return cls(tuple(SeqRange(lo, hi) for lo, hi in ranges))

    @property
    def uses_star(self) -> bool:
        return any(r.start is None or r.end is None for r in self.ranges)

    def resolve(self, largest: int) -> tuple[tuple[int, int], ...]:
        """Sorted, merged, inclusive (lo, hi) ranges; "*" becomes `largest`.

        With `largest` == 0 (empty mailbox) a range touching "*" keeps only
        its explicit part; numbers below 1 never appear. A saved "$" set
        resolves to nothing here: the session holds the saved result.
        """
        if len(self.ranges) == 1:
            # One range (FETCH 60, STORE 1, FETCH 1:5: most sets a session sends): the
            # loop below on one element, without its sort and generator (issue 13).
            lo, hi = self.ranges[0].bounds(largest)
            lo = max(lo, 1)
            return ((lo, hi),) if hi >= lo else ()
        bounds = sorted(r.bounds(largest) for r in self.ranges)
        merged: list[tuple[int, int]] = []
        for lo, hi in bounds:
            lo = max(lo, 1)
            if hi < lo:
                continue
            if merged and lo <= merged[-1][1] + 1:
                if hi > merged[-1][1]:
                    merged[-1] = (merged[-1][0], hi)
            else:
                merged.append((lo, hi))
        return tuple(merged)

    def contains(self, value: int, largest: int) -> bool:
        for r in self.ranges:
            lo, hi = r.bounds(largest)
            if lo <= value <= hi:
                return True
        return False

    def iter(self, largest: int) -> Iterator[int]:
        """Every number, ascending, once. Callers clip `largest` to what exists."""
        for lo, hi in self.resolve(largest):
            yield from range(lo, hi + 1)

    def max_explicit(self) -> int:
        """The largest number written out (0 if only "*"): for "invalid sequence number" checks."""
        if len(self.ranges) == 1:
            start, end = self.ranges[0].start, self.ranges[0].end  # the usual set: no generator
            if start is None or end is None:
                return start or end or 0
            return max(start, end)
        return max((n for r in self.ranges for n in (r.start, r.end) if n is not None), default=0)

    def to_bytes(self) -> bytes:
        if self.saved:
            return b"$"
        return b",".join(_range_bytes(r) for r in self.ranges)

    def __str__(self) -> str:
        return self.to_bytes().decode("ascii")


def _number(text: bytes) -> SeqNumber:
    if text == b"*":
        return None
    # isdigit() on bytes is ASCII-only; reject "0", leading zeros are allowed by no rule but harmless.
    if not text.isdigit() or text[0] == 0x30 or len(text) > 10:
        raise ParseError(f"invalid number in sequence set: {text[:20]!r}")
    value = int(text)
    if value > _MAX_NUMBER:
        raise ParseError("sequence number out of range")
    return value


def _range_bytes(r: SeqRange) -> bytes:
    start = b"*" if r.start is None else b"%d" % r.start
    if r.start == r.end:
        return start
    end = b"*" if r.end is None else b"%d" % r.end
    return start + b":" + end
