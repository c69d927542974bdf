"""CONTEXT=SORT/SEARCH updates (RFC 5267 4.3): whatever the change, a client that applies
the REMOVEFROM and ADDTO pairs in order, as RFC 5267 4.3.3/4.3.4 say, ends with the
server's new result list. Property-tested on random lists and changes."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from imapd.protocol.search_spec import AllKey, SearchProgram
from imapd.session import update_contexts as uc
from mailparse.sort_spec import SortCriterion

SORTED = ((SortCriterion.DATE, False),)


def _client_applies(current: list[int], removed: uc.Pairs, added: uc.Pairs) -> list[int]:
    out = list(current)
    for position, uids in removed:
        for uid in uids:
            if position == 0:
                out.remove(uid)
            else:
                assert out[position - 1] == uid, (out, position, uid)
                del out[position - 1]
    for position, uids in added:
        for i, uid in enumerate(uids):
            if position == 0:
                out.append(uid)
            else:
                out.insert(position - 1 + i, uid)
    return out


@st.composite
def changes(draw: st.DrawFn) -> tuple[list[int], set[int], list[int]]:
    """(old result in some order, members removed, new result: survivors in order plus new ones anywhere)."""
    old = draw(st.lists(st.integers(1, 500), unique=True, max_size=40))
    gone = set(draw(st.lists(st.sampled_from(old), unique=True))) if old else set()
    new = [u for u in old if u not in gone]
    fresh = draw(st.lists(st.integers(501, 900), unique=True, max_size=20))
    for uid in fresh:
        new.insert(draw(st.integers(0, len(new))), uid)
    return old, gone, new


@settings(max_examples=300, deadline=None)
@given(changes())
def test_sort_context_pairs_replay_to_the_new_order(change: tuple[list[int], set[int], list[int]]) -> None:
    old, gone, new = change
    ctx = uc.UpdateContext("t", True, SearchProgram(AllKey()), SORTED, list(old))
    removed = uc.remove(ctx, gone)
    added = uc.add(ctx, new)
    assert ctx.result == new
    assert _client_applies(old, removed, added) == new
    assert all(position >= 1 for position, _ in [*removed, *added])  # SORT contexts: real positions


@settings(max_examples=200, deadline=None)
@given(changes())
def test_search_context_pairs_use_position_zero(change: tuple[list[int], set[int], list[int]]) -> None:
    old, gone, new = change
    old, new = sorted(old), sorted(new)  # SEARCH results are in mailbox order
    ctx = uc.UpdateContext("t", True, SearchProgram(AllKey()), None, list(old))
    removed = uc.remove(ctx, gone)
    added = uc.add(ctx, new)
    assert ctx.result == new
    assert sorted(_client_applies(old, removed, added)) == new
    assert all(position == 0 for position, _ in [*removed, *added])
    line = uc.update_line(ctx, removed, added, seq_of=lambda uid: uid)
    assert (line == b"") == (not removed and not added)


def test_wire_form_merges_runs() -> None:
    ctx = uc.UpdateContext("B01", False, SearchProgram(AllKey()), SORTED, [10, 11, 12, 13])
    removed = uc.remove(ctx, {11, 12})
    added = uc.add(ctx, [10, 20, 21, 13, 30])
    line = uc.update_line(ctx, removed, added, seq_of=lambda uid: uid - 9)
    # 11, 12 (sequence numbers 2, 3) leave position 2 one after the other; 20, 21 arrive at 2 and 3, 30 at 5.
    assert line == b'* ESEARCH (TAG "B01") REMOVEFROM (2 2:3) ADDTO (2 11:12 5 21)\r\n'


def test_contexts_are_bounded_in_number_and_size() -> None:
    program = SearchProgram(AllKey())
    contexts: list[uc.UpdateContext] = []
    big = uc.UpdateContext("big", True, program, None, list(range(1, uc.MAX_CONTEXT_UIDS)))
    assert uc.open_context(contexts, big) == b""
    two = uc.UpdateContext("two", True, program, None, [1, 2])
    assert uc.open_context(contexts, two).startswith(b'* NO [NOUPDATE "two"]') and contexts == [big]
    contexts = []
    for i in range(uc.MAX_CONTEXTS):
        assert uc.open_context(contexts, uc.UpdateContext(f"c{i}", True, program, None, [1])) == b""
    extra = uc.UpdateContext("extra", True, program, None, [])
    assert uc.open_context(contexts, extra).startswith(b'* NO [NOUPDATE "extra"]')
    assert len(contexts) == uc.MAX_CONTEXTS
