"""Every SEARCH key against a small mailbox of corpus messages."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from imapd.message.search_eval import SearchContext, SearchEvaluator, search
from imapd.protocol import search_spec as S
from imapd.protocol.fetch_spec import DataNeeds
from imapd.protocol.sequence import SequenceSet
from mailparse.errors import MissingMessageData
from mailparse.view import MessageView

CORPUS = Path(__file__).parent / "data" / "mime"
DAY = 86400


def _view(uid: int, name: str, flags: tuple[str, ...], when: int, modseq: int, *, recent: bool = False) -> MessageView:
    data = (CORPUS / name).read_bytes()
    return MessageView(
        uid=uid,
        modseq=modseq,
        flags=flags,
        internal_date=when,
        tz_offset_minutes=0,
        size=len(data),
        chunks=(data,),
        recent=recent,
    )


# 2021-02-01 00:00 UTC and neighbours; sequence numbers are 1..5 in this order.
T0 = 1612137600
MAILBOX = [
    _view(10, "rfc3501_example.eml", ("\\Seen", "\\Answered"), T0 - DAY, 5),  # 2021-01-31
    _view(20, "alternative.eml", ("\\Flagged", "$Work"), T0, 6, recent=True),  # 2021-02-01 00:00
    _view(30, "mixed_nested.eml", ("\\Deleted", "\\Seen"), T0 + DAY - 1, 7),  # 2021-02-01 23:59:59
    _view(40, "non_ascii_headers.eml", ("\\Draft",), T0 + DAY, 8, recent=True),  # 2021-02-02
    _view(50, "truncated_base64.eml", (), T0 + 2 * DAY, 9),  # 2021-02-03, no Date: header
]
CONTEXT = SearchContext(largest_seq=5, largest_uid=50, saved_uids=frozenset({20, 50}))


def uids(key: S.SearchKey) -> list[int]:
    return [view.uid for _, view in search(key, list(enumerate(MAILBOX, start=1)), CONTEXT)]


def seqset(text: bytes) -> SequenceSet:
    return SequenceSet.parse(text)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("ALL", [10, 20, 30, 40, 50]),
        ("ANSWERED", [10]),
        ("UNANSWERED", [20, 30, 40, 50]),
        ("DELETED", [30]),
        ("UNDELETED", [10, 20, 40, 50]),
        ("DRAFT", [40]),
        ("UNDRAFT", [10, 20, 30, 50]),
        ("FLAGGED", [20]),
        ("UNFLAGGED", [10, 30, 40, 50]),
        ("SEEN", [10, 30]),
        ("unseen", [20, 40, 50]),
        ("RECENT", [20, 40]),
        ("NEW", [20, 40]),
        ("OLD", [10, 30, 50]),
    ],
)
def test_flag_keys(name: str, expected: list[int]) -> None:
    key = S.simple_key(name)
    assert key is not None
    assert uids(key) == expected


def test_keywords_are_case_insensitive() -> None:
    assert uids(S.keyword_key("$work")) == [20]
    assert uids(S.keyword_key("$Work", present=False)) == [10, 30, 40, 50]
    assert uids(S.FlagKey("\\SEEN")) == [10, 30]


@pytest.mark.parametrize(
    ("relation", "date", "expected"),
    [
        (S.DateRelation.BEFORE, datetime.date(2021, 2, 1), [10]),
        (S.DateRelation.ON, datetime.date(2021, 2, 1), [20, 30]),
        (S.DateRelation.SINCE, datetime.date(2021, 2, 2), [40, 50]),
    ],
)
def test_internal_date_keys_ignore_time(relation: S.DateRelation, date: datetime.date, expected: list[int]) -> None:
    assert uids(S.DateKey(S.DateField.INTERNAL, relation, date)) == expected


def test_internal_date_uses_the_messages_own_zone() -> None:
    view = MessageView(uid=1, modseq=1, flags=(), internal_date=T0 - 3600, tz_offset_minutes=120, size=1)
    on_first = S.DateKey(S.DateField.INTERNAL, S.DateRelation.ON, datetime.date(2021, 2, 1))
    assert SearchEvaluator(on_first, CONTEXT).matches(view, 1)  # 23:00 UTC is 01:00 the next day at +02:00


@pytest.mark.parametrize(
    ("relation", "date", "expected"),
    [
        # Date: headers: 1996-07-17, 2020-03-03, 2021-02-01, 2020-06-12; uid 50 has none (internal 2021-02-03).
        (S.DateRelation.BEFORE, datetime.date(2020, 3, 3), [10]),
        (S.DateRelation.ON, datetime.date(2020, 3, 3), [20]),
        (S.DateRelation.SINCE, datetime.date(2020, 6, 12), [30, 40, 50]),
    ],
)
def test_sent_date_keys_use_the_date_header(relation: S.DateRelation, date: datetime.date, expected: list[int]) -> None:
    assert uids(S.DateKey(S.DateField.SENT, relation, date)) == expected


def test_size_keys() -> None:
    size_30 = MAILBOX[2].size
    assert uids(S.SizeKey(S.SizeRelation.LARGER, size_30)) == [10]
    assert uids(S.SizeKey(S.SizeRelation.SMALLER, size_30)) == [20, 40, 50]
    assert uids(S.SizeKey(S.SizeRelation.LARGER, size_30 - 1)) == [10, 30]


def test_sequence_and_uid_sets() -> None:
    assert uids(S.SequenceKey(seqset(b"2,4:*"))) == [20, 40, 50]
    assert uids(S.SequenceKey(seqset(b"*"))) == [50]
    assert uids(S.SequenceKey(seqset(b"15:35"), uid=True)) == [20, 30]
    assert uids(S.SequenceKey(seqset(b"45:*"), uid=True)) == [50]
    assert uids(S.SequenceKey(seqset(b"$"))) == [20, 50]
    assert uids(S.SequenceKey(seqset(b"$"), uid=True)) == [20, 50]


def test_modseq() -> None:
    assert uids(S.ModSeqKey(7)) == [30, 40, 50]
    assert uids(S.ModSeqKey(8, entry_name="/flags/\\draft", entry_type="all")) == [40, 50]
    assert S.SearchProgram(S.AndKey((S.ModSeqKey(7), S.AllKey()))).uses_modseq
    assert not S.SearchProgram(S.AllKey()).uses_modseq


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("FROM", "TERRY", [10]),
        ("FROM", "jörg", [20]),  # RFC 2047 Q-encoded UTF-8, matched decoded
        ("FROM", "andré", [40]),  # RFC 2047 ISO-8859-1
        ("TO", "imap@cac", [10]),
        ("TO", "doe, jane", [20]),
        ("CC", "klensin", [10]),
        ("CC", "élodie", [40]),  # base64 encoded word
        ("BCC", "anyone", []),
        ("SUBJECT", "grüße aus köln", [20]),  # adjacent encoded words in two charsets
        ("SUBJECT", "RÉSUMÉ", [40]),  # raw 8-bit UTF-8 header
        ("SUBJECT", "truncated", [50]),
    ],
)
def test_address_and_subject_keys(field: str, value: str, expected: list[int]) -> None:
    assert uids(S.HeaderKey(S.ADDRESS_KEYS[field], value)) == expected


def test_header_key_with_arbitrary_field_and_empty_value() -> None:
    assert uids(S.HeaderKey("Message-ID", "EXAMPLE.ORG")) == [20, 30]
    assert uids(S.HeaderKey("content-transfer-encoding", "")) == [40, 50]  # present at the top level
    assert uids(S.HeaderKey("X-Nothing", "")) == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("line 05", [10]),
        ("schöne grüße", [20]),  # quoted-printable UTF-8 text part and base64 ISO-8859-1 html part
        ("<P>SCHÖNE", [20]),
        ("html body", [30]),
        ("réunion est reportée", [40]),  # quoted-printable ISO-8859-1
        ("base64 needle", [50]),  # inside truncated base64
        ("JVBERi0x", []),  # base64 of an application/pdf attachment is not text
        ("quarterly", []),  # BODY looks at decoded content, not at MIME part headers
        ("IMAP4rev1", []),  # only in the header
    ],
)
def test_body_key_searches_decoded_text(value: str, expected: list[int]) -> None:
    assert uids(S.BodyKey(value)) == expected


def test_text_key_searches_header_and_body() -> None:
    assert uids(S.TextKey("imap4rev1 wg")) == [10]
    assert uids(S.TextKey("Köln")) == [20]
    assert uids(S.TextKey("quarterly")) == [30]  # in a MIME part header: part of the message body
    assert uids(S.TextKey("mime-version")) == [10, 20, 30]


def test_embedded_message_header_and_text_are_searched() -> None:
    data = (CORPUS / "rfc822_inside.eml").read_bytes()
    view = MessageView(uid=1, modseq=1, flags=(), internal_date=0, tz_offset_minutes=0, size=len(data), chunks=(data,))
    assert SearchEvaluator(S.BodyKey("CAFÉ"), CONTEXT).matches(view, 1)
    assert SearchEvaluator(S.BodyKey("list-bounces"), CONTEXT).matches(view, 1)


def test_not_or_and_nesting() -> None:
    seen = S.FlagKey("\\Seen")
    flagged = S.FlagKey("\\Flagged")
    assert uids(S.NotKey(seen)) == [20, 40, 50]
    assert uids(S.OrKey(seen, flagged)) == [10, 20, 30]
    assert uids(S.AndKey((S.OrKey(seen, flagged), S.NotKey(S.FlagKey("\\Deleted"))))) == [10, 20]
    nested = S.OrKey(S.AndKey((S.BodyKey("köln"), S.FlagKey("$Work"))), S.NotKey(S.OrKey(seen, S.FlagKey("\\Recent"))))
    assert uids(nested) == [20, 50]


def test_needs_analysis() -> None:
    assert S.search_needs(S.AndKey((S.FlagKey("\\Seen"), S.SizeKey(S.SizeRelation.LARGER, 5)))) == DataNeeds(
        header=False, body=False
    )
    assert S.search_needs(S.NotKey(S.HeaderKey("From", "x"))) == DataNeeds(header=True, body=False)
    sent = S.DateKey(S.DateField.SENT, S.DateRelation.ON, datetime.date(2020, 1, 1))
    assert S.search_needs(S.OrKey(S.AllKey(), sent)) == DataNeeds(header=True, body=False)
    assert S.search_needs(S.OrKey(S.HeaderKey("To", "x"), S.TextKey("y"))) == DataNeeds(header=False, body=True)
    assert S.SearchProgram(S.BodyKey("z")).needs == DataNeeds(header=False, body=True)


def test_header_only_views_answer_header_searches() -> None:
    full = MAILBOX[0]
    assert full.chunks is not None
    data = full.chunks[0]
    header = data[: data.index(b"\r\n\r\n") + 4]
    view = MessageView(uid=1, modseq=1, flags=(), internal_date=0, tz_offset_minutes=0, size=len(data), header=header)
    assert SearchEvaluator(S.HeaderKey("Subject", "summary"), CONTEXT).matches(view, 1)
    with pytest.raises(MissingMessageData):
        SearchEvaluator(S.BodyKey("x"), CONTEXT).matches(view, 1)


def test_charset_decoding_of_search_strings() -> None:
    assert S.decode_search_string("Köln".encode(), "utf-8") == "Köln"
    assert S.decode_search_string(b"abc", "US-ASCII") == "abc"
    with pytest.raises(S.UnsupportedCharset):
        S.decode_search_string(b"abc", "KOI8-R")


def test_unlabelled_8bit_is_read_as_utf8_or_latin1() -> None:
    data = (
        b"Subject: R\xe9sum\xe9 =?utf-8?q?caf=C3=A9?=\r\nFrom: =?iso-8859-1?q?Andr=E9?= <a@b>\r\n"
        b"Content-Type: text/plain; charset=us-ascii\r\n\r\nna\xefve latin-1 body\r\n"
    )
    view = MessageView(uid=1, modseq=1, flags=(), internal_date=0, tz_offset_minutes=0, size=len(data), chunks=(data,))
    for key in (S.HeaderKey("Subject", "résumé café"), S.HeaderKey("From", "andré"), S.BodyKey("NAÏVE")):
        assert SearchEvaluator(key, CONTEXT).matches(view, 1), key
    assert not SearchEvaluator(S.BodyKey("naive"), CONTEXT).matches(view, 1)


def test_text_matches_across_header_folding() -> None:
    data = b"Subject: see you in\r\n Cologne =?utf-8?q?K=C3=B6ln?=\r\n soon\r\n\r\nbody\r\n"
    view = MessageView(uid=1, modseq=1, flags=(), internal_date=0, tz_offset_minutes=0, size=len(data), chunks=(data,))
    assert SearchEvaluator(S.TextKey("in cologne köln soon"), CONTEXT).matches(view, 1)
    assert SearchEvaluator(S.HeaderKey("subject", "IN COLOGNE"), CONTEXT).matches(view, 1)
