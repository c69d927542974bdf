"""Typed response -> exact bytes, for every response form and response code."""

from __future__ import annotations

import pytest

from imapd.protocol import response_codes as rc
from imapd.protocol import responses as r
from imapd.protocol.commands import StatusItem
from imapd.protocol.sequence import SequenceSet
from imapd.protocol.values import Atom, ChunkedLiteral, List, Number, Raw, String

OK = r.Condition.OK


def sset(text: str) -> SequenceSet:
    return SequenceSet.parse(text.encode())


CODES: list[tuple[rc.ResponseCode, bytes]] = [
    (rc.Code.ALERT, b"[ALERT]"),
    (rc.Code.TOOBIG, b"[TOOBIG]"),
    (rc.Code.TRYCREATE, b"[TRYCREATE]"),
    (rc.Code.NONEXISTENT, b"[NONEXISTENT]"),
    (rc.Code.ALREADYEXISTS, b"[ALREADYEXISTS]"),
    (rc.Code.AUTHENTICATIONFAILED, b"[AUTHENTICATIONFAILED]"),
    (rc.Code.UNAVAILABLE, b"[UNAVAILABLE]"),
    (rc.Code.OVERQUOTA, b"[OVERQUOTA]"),
    (rc.Code.LIMIT, b"[LIMIT]"),
    (rc.Code.CANNOT, b"[CANNOT]"),
    (rc.Code.SERVERBUG, b"[SERVERBUG]"),
    (rc.Code.CLIENTBUG, b"[CLIENTBUG]"),
    (rc.Code.CLOSED, b"[CLOSED]"),
    (rc.Code.INUSE, b"[INUSE]"),
    (rc.Code.NOPERM, b"[NOPERM]"),
    (rc.Code.CONTACTADMIN, b"[CONTACTADMIN]"),
    (rc.Code.PRIVACYREQUIRED, b"[PRIVACYREQUIRED]"),
    (rc.Code.NOMODSEQ, b"[NOMODSEQ]"),
    (rc.Code.READ_ONLY, b"[READ-ONLY]"),
    (rc.Code.READ_WRITE, b"[READ-WRITE]"),
    (rc.CapabilityCode(("IMAP4rev1", "LITERAL+", "AUTH=PLAIN")), b"[CAPABILITY IMAP4rev1 LITERAL+ AUTH=PLAIN]"),
    (rc.PermanentFlags(("\\Seen", "\\Deleted", "\\*")), b"[PERMANENTFLAGS (\\Seen \\Deleted \\*)]"),
    (rc.PermanentFlags(()), b"[PERMANENTFLAGS ()]"),
    (rc.UidValidity(3857529045), b"[UIDVALIDITY 3857529045]"),
    (rc.UidNext(4392), b"[UIDNEXT 4392]"),
    (rc.Unseen(12), b"[UNSEEN 12]"),
    (rc.HighestModSeq(715194045007), b"[HIGHESTMODSEQ 715194045007]"),
    (rc.AppendUid(38505, SequenceSet.from_numbers([3955])), b"[APPENDUID 38505 3955]"),
    (rc.AppendUid(38505, SequenceSet.from_numbers([3955, 3956, 3957, 3960])), b"[APPENDUID 38505 3955:3957,3960]"),
    (
        rc.CopyUid(38505, SequenceSet.from_numbers([304, 319, 320]), SequenceSet.from_numbers([3956, 3957, 3958])),
        b"[COPYUID 38505 304,319:320 3956:3958]",
    ),
    (rc.Modified(sset("7,9")), b"[MODIFIED 7,9]"),
    (rc.BadCharset(), b"[BADCHARSET (UTF-8 US-ASCII)]"),
]


@pytest.mark.parametrize(("code", "wire"), CODES, ids=[w.decode() for _, w in CODES])
def test_response_codes(code: rc.ResponseCode, wire: bytes) -> None:
    assert rc.encode_code(code) == wire
    assert r.Tagged("a1", r.Condition.NO, "text", code).to_bytes() == b"a1 NO " + wire + b" text\r\n"


RESPONSES: list[tuple[r.Response, bytes]] = [
    (r.Tagged("a1", OK, "LOGIN completed"), b"a1 OK LOGIN completed\r\n"),
    (r.Tagged("a2", r.Condition.BAD, "bad\r\ninjection"), b"a2 BAD bad  injection\r\n"),
    (r.Tagged("a4", r.Condition.NO, "Entw\u00fcrfe missing"), b"a4 NO Entw?rfe missing\r\n"),
    (r.Tagged("a3", OK, "", rc.Code.READ_WRITE), b"a3 OK [READ-WRITE] done\r\n"),
    (
        r.Untagged(OK, "mailha ready", rc.CapabilityCode(("IMAP4rev1",))),
        b"* OK [CAPABILITY IMAP4rev1] mailha ready\r\n",
    ),
    (r.Untagged(r.Condition.PREAUTH, "welcome"), b"* PREAUTH welcome\r\n"),
    (r.bye("autologout"), b"* BYE autologout\r\n"),
    (r.Untagged(r.Condition.NO, "disk", rc.Code.ALERT), b"* NO [ALERT] disk\r\n"),
    (r.Untagged(r.Condition.BAD, "garbage"), b"* BAD garbage\r\n"),
    (r.Continuation(), b"+ Ready\r\n"),
    (r.Continuation("idling"), b"+ idling\r\n"),
    (r.Continuation(data=b""), b"+ \r\n"),
    (r.Continuation(data=b"\x00abc"), b"+ AGFiYw==\r\n"),
    (r.CapabilityData(("IMAP4rev1", "IDLE", "MOVE")), b"* CAPABILITY IMAP4rev1 IDLE MOVE\r\n"),
    (r.ListData(("\\HasNoChildren",), "/", "INBOX"), b'* LIST (\\HasNoChildren) "/" INBOX\r\n'),
    (r.ListData(("\\Noselect",), None, ""), b'* LIST (\\Noselect) NIL ""\r\n'),
    (r.ListData((), "\\", "a b"), b'* LIST () "\\\\" "a b"\r\n'),
    (r.ListData(("\\Sent",), "/", "Gesendete Objekte"), b'* LIST (\\Sent) "/" "Gesendete Objekte"\r\n'),
    (
        r.ListData((), "/", "~peter/mail/\u53f0\u5317/\u65e5\u672c\u8a9e"),
        b'* LIST () "/" ~peter/mail/&U,BTFw-/&ZeVnLIqe-\r\n',
    ),
    (r.ListData((), "/", "\u53f0\u5317", utf8=True), '* LIST () "/" {6}\r\n\u53f0\u5317\r\n'.encode()),
    (r.ListData((), "/", "NIL"), b'* LIST () "/" "NIL"\r\n'),
    (r.ListData(("\\Subscribed",), "/", "Lists", lsub=True), b'* LSUB (\\Subscribed) "/" Lists\r\n'),
    (
        r.ListData(("\\NonExistent",), "/", "Foo", child_info_subscribed=True),
        b'* LIST (\\NonExistent) "/" Foo ("CHILDINFO" ("SUBSCRIBED"))\r\n',
    ),
    (r.ListData((), "/", "New", old_name="Old"), b'* LIST () "/" New ("OLDNAME" (Old))\r\n'),
    (
        r.StatusData("blurdybloop", ((StatusItem.MESSAGES, 231), (StatusItem.UIDNEXT, 44292))),
        b"* STATUS blurdybloop (MESSAGES 231 UIDNEXT 44292)\r\n",
    ),
    (r.StatusData("A&B", ((StatusItem.HIGHESTMODSEQ, 7),)), b"* STATUS A&-B (HIGHESTMODSEQ 7)\r\n"),
    (r.FlagsData(("\\Answered", "\\Seen", "$Junk")), b"* FLAGS (\\Answered \\Seen $Junk)\r\n"),
    (r.Exists(172), b"* 172 EXISTS\r\n"),
    (r.Recent(1), b"* 1 RECENT\r\n"),
    (r.Expunge(44), b"* 44 EXPUNGE\r\n"),
    (
        r.FetchData(12, List((Raw(b"UID"), Number(7), Raw(b"FLAGS"), List((Atom("\\Seen"),))))),
        b"* 12 FETCH (UID 7 FLAGS (\\Seen))\r\n",
    ),
    (
        r.FetchData(1, List((Raw(b"BODY[]"), ChunkedLiteral(5, (b"ab", b"cde"))))),
        b"* 1 FETCH (BODY[] {5}\r\nabcde)\r\n",
    ),
    (r.SearchData((2, 3, 6)), b"* SEARCH 2 3 6\r\n"),
    (r.SearchData(()), b"* SEARCH\r\n"),
    (r.SearchData((2, 5), modseq=917162500), b"* SEARCH 2 5 (MODSEQ 917162500)\r\n"),
    (
        r.ESearchData("A282", False, min=2, max=12, count=3),
        b'* ESEARCH (TAG "A282") MIN 2 MAX 12 COUNT 3\r\n',
    ),
    (
        r.ESearchData("A283", True, all=SequenceSet.from_numbers([2, 10, 11, 12, 13])),
        b'* ESEARCH (TAG "A283") UID ALL 2,10:13\r\n',
    ),
    (r.ESearchData("A284", False, count=0), b'* ESEARCH (TAG "A284") COUNT 0\r\n'),
    (r.ESearchData("A285", False, max=9, modseq=44), b'* ESEARCH (TAG "A285") MAX 9 MODSEQ 44\r\n'),
    (r.Vanished(SequenceSet.from_numbers([41, 43, 44, 45, 46])), b"* VANISHED 41,43:46\r\n"),
    (r.Vanished(sset("300:310,405"), earlier=True), b"* VANISHED (EARLIER) 300:310,405\r\n"),
    (r.Enabled(("CONDSTORE",)), b"* ENABLED CONDSTORE\r\n"),
    (r.Enabled(()), b"* ENABLED\r\n"),
    (r.IdData(None), b"* ID NIL\r\n"),
    (r.IdData((("name", "mailha"), ("os", None))), b'* ID ("name" "mailha" "os" NIL)\r\n'),
    (r.NamespaceData((("", "/"),)), b'* NAMESPACE (("" "/")) NIL NIL\r\n'),
    (
        r.NamespaceData((("", "/"),), (("~", "/"),), (("#shared/", "/"), ("#public/", None))),
        b'* NAMESPACE (("" "/")) (("~" "/")) (("#shared/" "/")("#public/" NIL))\r\n',
    ),
    (r.QuotaData("", (("STORAGE", 10, 512),)), b'* QUOTA "" (STORAGE 10 512)\r\n'),
    (r.QuotaRootData("INBOX", ("",)), b'* QUOTAROOT INBOX ""\r\n'),
    (r.QuotaRootData("comp.mail.mime", ()), b"* QUOTAROOT comp.mail.mime\r\n"),
]


@pytest.mark.parametrize(("response", "wire"), RESPONSES, ids=[w[:40].decode("utf-8") for _, w in RESPONSES])
def test_response_bytes(response: r.Response, wire: bytes) -> None:
    assert response.to_bytes() == wire
    assert b"".join(r.response_chunks(response)) == wire


def test_fetch_chunks_do_not_join_the_literal() -> None:
    body = (b"x" * 1000, b"y" * 1000)
    chunks = list(r.response_chunks(r.FetchData(3, List((Raw(b"BODY[]"), ChunkedLiteral(2000, body))))))
    assert any(chunk is body[0] for chunk in chunks)
    assert any(chunk is body[1] for chunk in chunks)


def test_tagged_rejects_untagged_only_conditions() -> None:
    with pytest.raises(ValueError):
        r.Tagged("a1", r.Condition.BYE, "x").to_bytes()


def test_rfc3501_select_example() -> None:
    """RFC 3501 section 6.3.1, byte for byte."""
    responses: list[r.Response] = [
        r.Exists(172),
        r.Recent(1),
        r.Untagged(OK, "Message 12 is first unseen", rc.Unseen(12)),
        r.Untagged(OK, "UIDs valid", rc.UidValidity(3857529045)),
        r.Untagged(OK, "Predicted next UID", rc.UidNext(4392)),
        r.FlagsData(("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")),
        r.Untagged(OK, "Limited", rc.PermanentFlags(("\\Deleted", "\\Seen", "\\*"))),
        r.Tagged("A142", OK, "SELECT completed", rc.Code.READ_WRITE),
    ]
    assert b"".join(x.to_bytes() for x in responses) == (
        b"* 172 EXISTS\r\n"
        b"* 1 RECENT\r\n"
        b"* OK [UNSEEN 12] Message 12 is first unseen\r\n"
        b"* OK [UIDVALIDITY 3857529045] UIDs valid\r\n"
        b"* OK [UIDNEXT 4392] Predicted next UID\r\n"
        b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n"
        b"* OK [PERMANENTFLAGS (\\Deleted \\Seen \\*)] Limited\r\n"
        b"A142 OK [READ-WRITE] SELECT completed\r\n"
    )


def test_rfc3501_list_examples() -> None:
    """RFC 3501 section 6.3.8."""
    assert r.ListData(("\\Noselect",), "/", "").to_bytes() == b'* LIST (\\Noselect) "/" ""\r\n'
    assert r.ListData(("\\Noselect",), ".", "#news.").to_bytes() == b'* LIST (\\Noselect) "." #news.\r\n'
    assert r.ListData(("\\Noselect",), "/", "~/Mail/foo").to_bytes() == b'* LIST (\\Noselect) "/" ~/Mail/foo\r\n'


def test_rfc3501_fetch_example() -> None:
    """RFC 3501 section 7.4.2: * 12 FETCH (FLAGS (\\Seen) INTERNALDATE "..." RFC822.SIZE 44827)."""
    data = List(
        (
            Raw(b"FLAGS"),
            List((Atom("\\Seen"),)),
            Raw(b"INTERNALDATE"),
            String(b"17-Jul-1996 02:44:25 -0700"),
            Raw(b"RFC822.SIZE"),
            Number(44827),
        )
    )
    assert r.FetchData(12, data).to_bytes() == (
        b'* 12 FETCH (FLAGS (\\Seen) INTERNALDATE "17-Jul-1996 02:44:25 -0700" RFC822.SIZE 44827)\r\n'
    )
