"""Arbitrary bytes never make the MIME parser, renderer or search evaluator raise."""

from __future__ import annotations

import datetime

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from imapd.message import wire
from imapd.message.fetch_render import fetch_list, render_fetch
from imapd.message.search_eval import SearchContext, SearchEvaluator
from imapd.protocol import fetch_spec as F
from imapd.protocol import search_spec as S
from imapd.protocol.fetch_spec import BodySection, Partial, Section, TextSpec
from imapd.protocol.sequence import SequenceSet
from imapd.protocol.values import String, encode
from mailparse.addresses import _parse_simple, parse_addresses, parse_addresses_general
from mailparse.errors import UnknownTransferEncoding
from mailparse.headers import header_end, header_end_by_lines
from mailparse.mime_tree import Part, parse_message
from mailparse.view import MessageView

ATTRIBUTES: tuple[F.FetchAttribute, ...] = (
    *F.MACROS["FULL"],
    F.BODYSTRUCTURE,
    F.RFC822_HEADER,
    F.RFC822_TEXT,
    F.MODSEQ,
    F.UID,
    BodySection(),
    BodySection(Section((), TextSpec.HEADER_FIELDS, ("From", "content-type")), Partial(3, 40)),
    BodySection(Section((), TextSpec.HEADER_FIELDS_NOT, ("subject",))),
    BodySection(Section((1,), TextSpec.MIME)),
    BodySection(Section((1, 2))),
    BodySection(Section((2,), TextSpec.HEADER)),
    BodySection(Section((2,), TextSpec.TEXT)),
    BodySection(Section((1, 1, 1))),
    F.BinarySection((1,)),
    F.BinarySize((2, 1)),
)
ATTRIBUTES_NOT_BINARY = tuple(a for a in ATTRIBUTES if not isinstance(a, F.BinarySection | F.BinarySize))
SEARCH = S.AndKey(
    (
        S.OrKey(S.TextKey("zz"), S.BodyKey("é")),
        S.NotKey(S.HeaderKey("From", "a")),
        S.DateKey(S.DateField.SENT, S.DateRelation.SINCE, datetime.date(2000, 1, 1)),
    )
)

# Fragments that steer random messages into the parser's interesting paths.
FRAGMENTS = st.sampled_from(
    [
        b"Content-Type: multipart/mixed; boundary=b\r\n",
        b'Content-Type: multipart/alternative; boundary="b"\n',
        b"Content-Type: message/rfc822\r\n",
        b"Content-Type: multipart/digest; boundary=b\r\n",
        b"Content-Transfer-Encoding: base64\r\n",
        b"Content-Transfer-Encoding: quoted-printable\r\n",
        b"Content-Type: text/plain; charset=iso-8859-1\r\n",
        b'Content-Disposition: attachment; filename="x\r\n',
        b'From: "a" <b@c>, group: d@e;\r\n',
        b"To: <<@@>>,,;;::\r\n",
        b"Subject: =?utf-8?b?w6k=?= \xff\r\n",
        b"Date: Mon, 31 Feb 99999 25:61:61 +9999\r\n",
        b"\r\n",
        b"\n",
        b"--b\r\n",
        b"--b--\r\n",
        b" folded\r\n",
        b"=C3=A9=\r\n",
        b"w6k=\r\n",
        b"\x00\xff",
    ]
)
MESSAGES = st.one_of(st.binary(max_size=2000), st.lists(FRAGMENTS | st.binary(max_size=20), max_size=40).map(b"".join))


def _check_offsets(part: Part, size: int) -> None:
    assert 0 <= part.start <= part.body_start <= part.end <= size
    for child in part.children:
        _check_offsets(child, size)
    if part.message is not None:
        _check_offsets(part.message, size)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(MESSAGES, st.integers(min_value=1, max_value=4))
@example(b"Content-Transfer-Encoding :f", 1)  # BINARY of an unknown encoding: found by this test
def test_arbitrary_messages_render_and_search(data: bytes, nchunks: int) -> None:
    step = max(1, len(data) // nchunks)
    chunks = tuple(data[i : i + step] for i in range(0, len(data), step)) or (b"",)
    view = MessageView(
        uid=1, modseq=1, flags=("\\Seen",), internal_date=0, tz_offset_minutes=0, size=len(data), chunks=chunks
    )
    try:
        out = encode(fetch_list(render_fetch(ATTRIBUTES, view)))
    except UnknownTransferEncoding:
        # BINARY of a part whose Content-Transfer-Encoding is unknown is answered NO [UNKNOWN-CTE]
        # (RFC 3516); everything else must still render.
        out = encode(fetch_list(render_fetch(ATTRIBUTES_NOT_BINARY, view)))
    assert out.startswith(b"(FLAGS (\\Seen) ")
    SearchEvaluator(SEARCH, SearchContext(1, 1)).matches(view, 1)
    _check_offsets(parse_message(data), len(data))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_address_headers(value: bytes) -> None:
    for address in parse_addresses(value):
        # A host of None marks a group start/end; real addresses always get a host.
        assert address.host is not None or address.name is None


_ADDR_PIECES = st.sampled_from(
    [b"a", b"b.c", b"x-y", b"", b" ", b".", b"@", b'"', b"\\", b"(c)", b":", b";", b"<", b">"]
)
_CLEAN = st.sampled_from([b"a", b"b.c", b"x-y", b"Jo  Ann", b"=?utf-8?q?x?=", b"\xc3\xa9"])
_WORD = st.one_of(_CLEAN, _CLEAN, st.lists(_ADDR_PIECES, min_size=1, max_size=4).map(b"".join))
_ITEM = st.one_of(
    st.tuples(_WORD, _WORD).map(lambda t: t[0] + b"@" + t[1]),
    st.tuples(_WORD, _WORD, _WORD).map(lambda t: t[0] + b" <" + t[1] + b"@" + t[2] + b">"),
    st.tuples(_WORD, _WORD, _WORD).map(lambda t: b'"' + t[0] + b'" <' + t[1] + b"@" + t[2] + b">"),
    _WORD,
)
ADDRESSY = st.tuples(st.lists(_ITEM, max_size=4), st.sampled_from([b",", b", ", b" ,\r\n ", b";"])).map(
    lambda t: t[1].join(t[0])
)


@settings(max_examples=200, deadline=None)
@given(ADDRESSY)
def test_fast_address_path_agrees_with_the_general_parser(value: bytes) -> None:
    fast = _parse_simple(value)
    if fast is not None:
        assert fast == parse_addresses_general(value)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=1100))
def test_wire_string_matches_value_encoder(value: bytes) -> None:
    assert wire.string(value) == encode(String(value))


HEADERISH = st.lists(
    st.sampled_from(
        [b"A: b\r\n", b"X-Y : z\n", b" cont\r\n", b"\tc\n", b"\r\n", b"\n", b"junk line\r\n", b":\r\n", b"\xff"]
    ),
    max_size=12,
).map(b"".join)


@settings(max_examples=200, deadline=None)
@given(HEADERISH)
def test_fast_header_end_agrees_with_the_line_reader(data: bytes) -> None:
    assert header_end(data) == header_end_by_lines(data, 0, len(data))


_LEAF_KEYS: st.SearchStrategy[S.SearchKey] = st.one_of(
    st.sampled_from(sorted(S.SIMPLE_KEYS.values(), key=repr)),
    st.builds(S.HeaderKey, st.sampled_from(["From", "subject", "X-Nope", "content-type"]), st.text(max_size=5)),
    st.builds(S.BodyKey, st.text(max_size=5)),
    st.builds(S.TextKey, st.text(max_size=5)),
    st.builds(S.DateKey, st.sampled_from(S.DateField), st.sampled_from(S.DateRelation), st.dates()),
    st.builds(S.SizeKey, st.sampled_from(S.SizeRelation), st.integers(0, 10_000)),
    st.builds(S.ModSeqKey, st.integers(0, 10)),
    st.builds(
        S.SequenceKey, st.sampled_from([b"1", b"1:*", b"*", b"$", b"2,4:5"]).map(SequenceSet.parse), st.booleans()
    ),
)
SEARCH_KEYS = st.recursive(
    _LEAF_KEYS,
    lambda inner: st.one_of(
        st.builds(S.NotKey, inner),
        st.builds(S.OrKey, inner, inner),
        st.lists(inner, min_size=1, max_size=3).map(lambda keys: S.AndKey(tuple(keys))),
    ),
    max_leaves=8,
)


@settings(max_examples=200, deadline=None)
@given(SEARCH_KEYS, MESSAGES)
def test_random_search_trees_on_random_messages(key: S.SearchKey, data: bytes) -> None:
    view = MessageView(
        uid=3,
        modseq=5,
        flags=("\\Seen",),
        internal_date=0,
        tz_offset_minutes=0,
        size=len(data),
        chunks=(data,),
        save_date=0,
    )
    evaluator = SearchEvaluator(key, SearchContext(largest_seq=4, largest_uid=7, saved_uids=frozenset({3})))
    # NOT must always invert: evaluation is deterministic and total.
    assert SearchEvaluator(S.NotKey(key), evaluator.context).matches(view, 2) != evaluator.matches(view, 2)
