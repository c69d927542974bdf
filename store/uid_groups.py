"""Ascending UIDs cut into the groups that share a key of a segmented index (uid >> bits).

The flag index (64 UIDs a segment), the header index (16) and the flag-set member
lists (256 a block) key their values by uid >> bits. A write that removes 1,000
messages grouped them one UID at a time (a dict look-up and a set add each); the UIDs
it removes are ascending, so a bisect per group finds where each group ends.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence


def by_key(uids: Sequence[int], bits: int) -> Iterator[tuple[int, Sequence[int]]]:
    """(uid >> bits, the slice of `uids` with that key) in order; `uids` ascending."""
    at, count = 0, len(uids)
    while at < count:
        no = uids[at] >> bits
        end = bisect.bisect_left(uids, (no + 1) << bits, at)
        yield no, uids[at:end]
        at = end
