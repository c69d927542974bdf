"""IMAP UID sets ("1:5,7,10:*") as the store API carries them: parsed into closed ranges
(the store, and imapd's FakeStore), and written compactly (imapd, asking the store).

"*" stands for the highest UID in the mailbox, resolved when the set is
applied; "n:*" with n above the highest UID still includes the highest UID,
as RFC 3501 (9, seq-range) says.
"""

from __future__ import annotations

import bisect
import itertools
import re
from collections.abc import Iterable
from dataclasses import dataclass

from store.errors import InvalidArgument

STAR = 0  # UID 0 never exists, so it can stand for "*" inside a parsed range
_PART_RE = re.compile(r"(\d+|\*)(?::(\d+|\*))?")
MAX_UID = 0xFFFFFFFF


@dataclass(frozen=True)
class UidSet:
    ranges: tuple[tuple[int, int], ...]  # (a, b) as written; STAR for "*"

    @property
    def has_star(self) -> bool:
        """Whether "*" is in the set: only then does `resolve` need the highest UID."""
        return STAR in itertools.chain.from_iterable(self.ranges)  # no Python generator per FETCH or STORE

    def resolve(self, highest: int) -> list[tuple[int, int]]:
        """Ordered, merged, closed ranges with "*" replaced by `highest`.

        For an empty mailbox `highest` is 0, which no message has, so "*"
        matches nothing there.
        """
        out: list[tuple[int, int]] = []
        for a, b in self.ranges:
            a = highest if a == STAR else a
            b = highest if b == STAR else b
            out.append((min(a, b), max(a, b)))
        out.sort()
        merged: list[tuple[int, int]] = []
        for lo, hi in out:
            if merged and lo <= merged[-1][1] + 1:
                merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
            else:
                merged.append((lo, hi))
        return merged


def format_uids(uids: Iterable[int]) -> str:
    """Compact ascending ranges: [1,2,3,7] -> "1:3,7"; empty -> ""."""
    ordered = sorted(set(uids))
    if len(ordered) > 1 and ordered[-1] - ordered[0] == len(ordered) - 1:
        return f"{ordered[0]}:{ordered[-1]}"  # one run (COPYUID of COPY 1:1000): no walk over it
    parts: list[str] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}:{ordered[j]}")
        i = j + 1
    return ",".join(parts)


def contains(ranges: list[tuple[int, int]], uid: int) -> bool:
    """Whether `uid` is in resolved, ordered ranges."""
    i = bisect.bisect_right(ranges, (uid, MAX_UID + 1)) - 1
    return i >= 0 and ranges[i][0] <= uid <= ranges[i][1]


def _number(text: str, whole: str) -> int:
    if text == "*":
        return STAR
    value = int(text)
    if value == 0 or value > MAX_UID:
        raise InvalidArgument(f"UID set {whole!r}: {text} is not a valid UID (1..{MAX_UID})")
    return value


def single(text: str) -> int | None:
    """The UID when `text` is one UID ("60": what most STOREs and FETCHes of a session send),
    checked as `parse` checks it (same errors); None for any other set."""
    if not text.isdecimal() or len(text) > 10:
        return None  # (a longer run of digits is past MAX_UID: `parse` says so)
    return _number(text, text)


def parse(text: str) -> UidSet:
    if not text:
        raise InvalidArgument("UID set is empty")
    if len(text) > 100_000:
        raise InvalidArgument("UID set is longer than 100,000 characters")
    if text.isdecimal():
        # One UID (STORE 1, FETCH 60: most sets a session sends): what the pattern's \d+ would
        # match (isdecimal is Unicode Nd, as \d is), without the regex and the loop.
        uid = _number(text, text)
        return UidSet(((uid, uid),))
    ranges: list[tuple[int, int]] = []
    for part in text.split(","):
        m = _PART_RE.fullmatch(part)
        if m is None:
            raise InvalidArgument(
                f"UID set {text!r} is malformed at {part!r}: expected n, n:m or n:* separated by commas"
            )
        a = _number(m.group(1), text)
        b = _number(m.group(2), text) if m.group(2) is not None else a
        ranges.append((a, b))
    return UidSet(tuple(ranges))
