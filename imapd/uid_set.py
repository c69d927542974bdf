"""UID sets in IMAP syntax ("1:5,7,10:*"), as the store API carries them."""

from __future__ import annotations

from collections.abc import Iterable


def format_uids(uids: Iterable[int]) -> str:
    """Compact ascending ranges: [1,2,3,7] -> "1:3,7"; empty -> ""."""
    ordered = sorted(set(uids))
    parts: list[str] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}:{ordered[j]}")
        i = j + 1
    return ",".join(parts)


def parse_uids(text: str, highest: int) -> list[tuple[int, int]]:
    """Ranges (low, high) inclusive; "*" means `highest`. Raises ValueError."""
    ranges: list[tuple[int, int]] = []
    if not text:
        return ranges
    for part in text.split(","):
        lo_s, _, hi_s = part.partition(":")
        lo = highest if lo_s == "*" else int(lo_s)
        hi = lo if not hi_s else (highest if hi_s == "*" else int(hi_s))
        if (lo_s != "*" and lo <= 0) or (hi_s not in ("", "*") and hi <= 0):
            raise ValueError(f"bad uid set {text!r}")
        ranges.append((min(lo, hi), max(lo, hi)))
    return ranges


def contains(ranges: list[tuple[int, int]], uid: int) -> bool:
    return any(lo <= uid <= hi for lo, hi in ranges)
