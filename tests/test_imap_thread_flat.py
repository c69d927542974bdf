"""The flat THREAD algorithms (imapd/message/threads.py) give the thread lists of the object
form they replaced (tests/reference_threads.py) for any mix of references, loops, duplicate and
missing Message-IDs, shared and empty subjects, replies and equal dates."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from imapd.message.thread_input import ThreadColumns, ThreadInput, ThreadInputBuilder
from imapd.message.threads import ThreadAlgorithm, thread_columns, thread_list
from mailparse.sort_keys import (
    SortCriterion,
    SortKeys,
    ThreadFields,
    sort_columns,
    sort_int_column,
    stored_keys,
    thread_fields,
)
from tests import reference_threads

_IDS = [b"<m%d@x>" % i for i in range(12)]


@st.composite
def _mailbox(draw: st.DrawFn) -> list[tuple[int, SortKeys]]:
    count = draw(st.integers(min_value=0, max_value=14))
    numbers = draw(st.lists(st.integers(min_value=1, max_value=60), min_size=count, max_size=count, unique=True))
    out: list[tuple[int, SortKeys]] = []
    for number in numbers:
        keys = SortKeys(
            arrival=number,
            size=100,
            sent=draw(st.integers(min_value=-3, max_value=3)),  # many equal dates: ties by number
            subject=draw(st.sampled_from(["", "a", "b", "c"])),
            subject_reply=draw(st.booleans()),
            from_="",
            to="",
            cc="",
            display_from="",
            display_to="",
            message_id=draw(st.none() | st.sampled_from(_IDS)),  # duplicates and self-references too
            parent_ids=tuple(draw(st.lists(st.sampled_from(_IDS), max_size=5))),
        )
        out.append((number, keys))
    return out


@settings(max_examples=1500, deadline=None)
@given(_mailbox(), st.sampled_from(list(ThreadAlgorithm)))
def test_flat_threads_equal_the_object_form(messages: list[tuple[int, SortKeys]], algorithm: ThreadAlgorithm) -> None:
    expected = reference_threads.render(reference_threads.thread(algorithm, messages))
    assert thread_list(algorithm, messages) == expected


_PLACEHOLDER = ThreadFields(0, "", False, None, ())


@settings(max_examples=500, deadline=None)
@given(_mailbox(), st.sampled_from(list(ThreadAlgorithm)), st.data())
def test_the_chunked_reader_builds_the_input_of_the_whole(
    messages: list[tuple[int, SortKeys]], algorithm: ThreadAlgorithm, data: st.DataObject
) -> None:
    """imapd's large-mailbox reader (sort_commands._thread_input) feeds the builder chunk by chunk,
    holds a place for a message whose header it reads later (`replace`), drops one expunged
    meanwhile (`keep`) and may renumber: the same thread list as the whole mailbox threaded at
    once, and the interned columns say the same (ids equal where the Message-IDs are)."""
    messages = sorted(messages, key=lambda m: m[0])
    late = data.draw(st.sets(st.sampled_from(range(len(messages)))) if messages else st.just(set()))
    gone = data.draw(st.sets(st.sampled_from(sorted(late))) if late else st.just(set()))
    builder = ThreadInputBuilder()
    at = 0
    while at < len(messages):
        chunk = messages[at : at + data.draw(st.integers(min_value=1, max_value=5))]
        fields = [
            _PLACEHOLDER
            if at + j in late
            else ThreadFields(k.sent, k.subject, k.subject_reply, k.message_id, k.parent_ids)
            for j, (_, k) in enumerate(chunk)
        ]
        sents, subjects, replies, ids, parents = zip(*fields, strict=True)
        builder.add_columns(ThreadColumns([n for n, _ in chunk], sents, subjects, replies, ids, parents))
        at += len(chunk)
    for i in sorted(late - gone):
        k = messages[i][1]
        builder.replace(i, ThreadFields(k.sent, k.subject, k.subject_reply, k.message_id, k.parent_ids))
    kept = [i for i in range(len(messages)) if i not in gone]
    builder.keep(kept)
    builder.renumber([10 * messages[i][0] for i in kept])
    built = builder.build()
    expected = [(10 * messages[i][0], messages[i][1]) for i in kept]
    assert thread_columns(algorithm, built) == thread_list(algorithm, expected)
    whole = ThreadInput.of(ThreadColumns.of([n for n, _ in expected], [k for _, k in expected]))
    assert list(built.numbers) == list(whole.numbers)
    assert built.subjects == whole.subjects
    same_id = [(a == b) for a in (k.message_id for _, k in expected) for b in (k.message_id for _, k in expected)]
    assert [(a == b) for a in built.ids for b in built.ids] == same_id


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.integers(min_value=-(2**40), max_value=2**40) | st.integers(min_value=-3, max_value=3), max_size=40),
    st.booleans(),
)
def test_one_int_column_sorts_as_the_columns_do(values: list[int], reverse: bool) -> None:
    """`sort_int_column` (one int per message: the large SORT by DATE/ARRIVAL/SIZE) orders as
    `sort_columns`, ties by number ascending either way."""
    numbers = [3 * i + 1 for i in range(len(values))]
    expected = sort_columns(numbers, {SortCriterion.DATE: values}, [(SortCriterion.DATE, reverse)])
    assert sort_int_column(numbers, values, reverse=reverse) == expected
    assert sort_int_column(range(1, len(values) + 1), values, reverse=reverse) == [n // 3 + 1 for n in expected]


def test_a_large_mailbox_threads_alike() -> None:
    """Chains, fan-outs and subject merges at a size where every code path repeats."""
    messages: list[tuple[int, SortKeys]] = []
    for n in range(1, 3001):
        parents = (b"<m%d@x>" % (n - 1 - n % 7),) if n % 3 else ()
        messages.append(
            (
                n,
                SortKeys(
                    n,
                    100,
                    (n * 7919) % 500,
                    f"topic {n % 40}",
                    n % 3 != 0,
                    "",
                    "",
                    "",
                    "",
                    "",
                    b"<m%d@x>" % n if n % 11 else None,
                    parents,
                ),
            )
        )
    for algorithm in ThreadAlgorithm:
        expected = reference_threads.render(reference_threads.thread(algorithm, messages))
        assert thread_list(algorithm, messages) == expected


def test_a_reply_chain_deeper_than_the_python_stack_threads() -> None:
    """5,000 messages each replying to the one before: one thread, listed as a chain (the object
    form's recursive pruning and rendering raised RecursionError from ~1,000 deep)."""

    def keys(n: int) -> SortKeys:
        parents = (b"<m%d@x>" % (n - 1),) if n > 1 else ()
        return SortKeys(n, 1, n, "s", n > 1, "", "", "", "", "", b"<m%d@x>" % n, parents)

    messages = [(n, keys(n)) for n in range(1, 5001)]
    chain = b"(" + b" ".join(b"%d" % n for n in range(1, 5001)) + b")"
    assert thread_list(ThreadAlgorithm.REFERENCES, messages) == chain
    assert thread_list(ThreadAlgorithm.REFS, messages) == chain
    # Every message but the last also has a leaf reply (numbers 10001...): a branch at each level.
    leaves = [
        (10_000 + n, SortKeys(10_000 + n, 1, n, "s", True, "", "", "", "", "", None, (b"<m%d@x>" % n,)))
        for n in range(1, 5000)
    ]
    listing = thread_list(ThreadAlgorithm.REFERENCES, messages + leaves)
    # siblings by date: the leaf (sent n) before the next message (sent n + 1)
    assert listing.startswith(b"(1 (10001)(2 (10002)(3 (10003)(4 ") and listing.count(b"(") == 2 * 4999 + 1


def test_thread_fields_are_those_of_the_full_keys() -> None:
    """`thread_fields` (the subject alone decoded) reads what `SortKeys.from_stored` reads, and
    refuses what it refuses."""
    headers = [
        b"Subject: Re: [list] Hello \xc3\xa9t\xc3\xa9\r\nFrom: A <a@x>\r\nMessage-ID: <a@x>\r\n"
        b"References: <p@x> <q@x>\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\n",
        b"Subject: plain\r\nDate: not a date\r\n\r\n",
        b"From: nobody <n@x>\r\nIn-Reply-To: <r@x> <s@x>\r\n\r\n",
        b"\r\n",
    ]
    for header in headers:
        raw = stored_keys(header)
        full = SortKeys.from_stored(raw, internal_date=77, size=1)
        assert full is not None
        fields = thread_fields(raw, 77)
        assert fields == (full.sent, full.subject, full.subject_reply, full.message_id, full.parent_ids)
    for broken in (b"", b"\x02" + stored_keys(headers[0])[1:], stored_keys(headers[0]).replace(b"\0", b"", 1)):
        assert SortKeys.from_stored(broken, internal_date=77, size=1) is None
        assert thread_fields(broken, 77) is None


def test_an_empty_chunk_between_chunks_keeps_the_columns_aligned() -> None:
    def chunk(numbers: list[int]) -> ThreadColumns:
        return ThreadColumns(
            numbers,
            [1_700_000_000 + n for n in numbers],
            [f"s{n}" for n in numbers],
            [False] * len(numbers),
            [b"<%d@x>" % n for n in numbers],
            [(b"<%d@x>" % (n - 1),) if n > 1 else () for n in numbers],
        )

    builder = ThreadInputBuilder()
    for numbers in ([1, 2], [], [3]):
        builder.add_columns(chunk(numbers))
    built = builder.build()
    whole = ThreadInput.of(chunk([1, 2, 3]))
    assert len(built.ref_starts) == len(built.numbers) == 3
    assert [list(c) for c in (built.ref_starts, built.ref_counts)] == [
        list(c) for c in (whole.ref_starts, whole.ref_counts)
    ]
