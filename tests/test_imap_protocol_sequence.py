"""Sequence sets: parsing, resolving against "*", membership, compression."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imapd.protocol.errors import ParseError
from imapd.protocol.sequence import SeqRange, SequenceSet


def test_parse_and_wire_form() -> None:
    s = SequenceSet.parse(b"1:3,5,7:*,*:9,*")
    assert s.ranges == (SeqRange(1, 3), SeqRange(5, 5), SeqRange(7, None), SeqRange(None, 9), SeqRange(None, None))
    assert s.to_bytes() == b"1:3,5,7:*,*:9,*"
    assert str(s) == "1:3,5,7:*,*:9,*"
    assert s.uses_star


def test_resolve_merges_sorts_and_replaces_star() -> None:
    s = SequenceSet.parse(b"9:7,1:3,4,20:*")
    assert s.resolve(25) == ((1, 4), (7, 9), (20, 25))
    assert s.resolve(15) == ((1, 4), (7, 9), (15, 20))  # 20:* with * = 15 is 15:20
    assert list(SequenceSet.parse(b"2,4:5").iter(10)) == [2, 4, 5]


def test_resolve_on_empty_mailbox() -> None:
    assert SequenceSet.parse(b"1:*").resolve(0) == ((1, 1),)
    assert SequenceSet.parse(b"*").resolve(0) == ()


def test_contains_follows_star() -> None:
    s = SequenceSet.parse(b"3:*")
    assert s.contains(3, 5) and s.contains(5, 5)
    assert not s.contains(2, 5)
    assert s.contains(2, 2)  # 3:* with * = 2 is 2:3
    assert s.max_explicit() == 3


def test_saved_result() -> None:
    s = SequenceSet.parse(b"$")
    assert s.saved and s.to_bytes() == b"$" and s.resolve(10) == ()


@pytest.mark.parametrize("text", [b"", b"0", b"1:0", b"a", b"1,,2", b"1:", b":1", b"4294967296", b"1:2:3", b"01"])
def test_invalid(text: bytes) -> None:
    with pytest.raises(ParseError):
        SequenceSet.parse(text)


@given(st.sets(st.integers(min_value=1, max_value=500), max_size=60))
def test_from_numbers_is_compact_and_exact(numbers: set[int]) -> None:
    s = SequenceSet.from_numbers(numbers)
    assert set(s.iter(500)) == numbers
    if numbers:
        assert SequenceSet.parse(s.to_bytes()) == s
    else:
        assert s.to_bytes() == b""
    ranges = s.resolve(500)
    # compact: no two ranges touch
    assert all(b[0] > a[1] + 1 for a, b in itertools.pairwise(ranges))


_ENDS = st.one_of(st.none(), st.integers(min_value=1, max_value=40))


@given(st.lists(st.tuples(_ENDS, _ENDS), min_size=1, max_size=3), st.integers(min_value=0, max_value=40))
def test_one_range_resolves_as_the_general_path(ranges: list[tuple[int | None, int | None]], largest: int) -> None:
    """A set of one range takes a shortcut in resolve and max_explicit: the same answers as the
    set with that range written twice (which takes the general path)."""
    for start, end in ranges:
        one = SequenceSet((SeqRange(start, end),))
        twice = SequenceSet((SeqRange(start, end), SeqRange(start, end)))
        assert one.resolve(largest) == twice.resolve(largest)
        assert one.max_explicit() == twice.max_explicit()
        numbers = {n for n in range(1, 41) if one.contains(n, largest)}
        assert set(one.iter(largest)) == numbers
