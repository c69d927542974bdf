"""Wire line -> typed command, for every command form the core parses."""

from __future__ import annotations

import datetime

import pytest

from imapd.protocol import commands as c
from imapd.protocol import events as ev
from imapd.protocol import fetch_spec as fs
from imapd.protocol import search_spec as ss
from imapd.protocol.mutf7 import UndecodableName
from imapd.protocol.parser import CommandParser
from imapd.protocol.sequence import SeqRange, SequenceSet
from mailparse.sort_spec import SortCriterion, ThreadAlgorithm
from tests.imap_protocol_support import feed


def seq(text: str) -> SequenceSet:
    return SequenceSet.parse(text.encode())


def parse_one(line: bytes, *, authenticated: bool = True) -> c.Command:
    parser = CommandParser(authenticated=authenticated, stream_append=False)
    events = feed(parser, line + b"\r\n")
    assert len(events) == 1, events
    event = events[0]
    assert isinstance(event, ev.CommandReceived), event
    assert event.tag == "t1"
    return event.command


CET = datetime.timezone(datetime.timedelta(hours=1))
PST = datetime.timezone(-datetime.timedelta(hours=8))

CASES: list[tuple[bytes, c.Command]] = [
    (b"t1 CAPABILITY", c.Capability()),
    (b"t1 capability", c.Capability()),
    (b"t1 NOOP", c.Noop()),
    (b"t1 LOGOUT", c.Logout()),
    (b"t1 STARTTLS", c.StartTls()),
    (b"t1 AUTHENTICATE PLAIN", c.Authenticate("PLAIN")),
    (b"t1 AUTHENTICATE PLAIN AGJvYgBzZWNyZXQ=", c.Authenticate("PLAIN", b"\x00bob\x00secret")),
    (b"t1 AUTHENTICATE plain =", c.Authenticate("PLAIN", b"")),
    (b"t1 LOGIN bob secret", c.Login("bob", "secret")),
    (b't1 LOGIN "bob@example.org" "p\\"a\\\\ss"', c.Login("bob@example.org", 'p"a\\ss')),
    (b"t1 ID NIL", c.Id(None)),
    (b't1 ID ("name" "mutt" "version" NIL)', c.Id((("name", "mutt"), ("version", None)))),
    (b"t1 ID ()", c.Id(())),
    (b"t1 COMPRESS DEFLATE", c.Compress("DEFLATE")),
    (b"t1 SELECT INBOX", c.Select("INBOX")),
    (b"t1 SELECT inbox", c.Select("INBOX")),
    (b'"t1 SELECT "Sent"'[1:], c.Select("Sent")),
    (b"t1 EXAMINE Archive", c.Select("Archive", read_only=True)),
    (b"t1 SELECT INBOX (CONDSTORE)", c.Select("INBOX", condstore=True)),
    (b"t1 EXAMINE INBOX (CONDSTORE)", c.Select("INBOX", read_only=True, condstore=True)),
    (
        b"t1 SELECT INBOX (QRESYNC (67890007 90060115194045000))",
        c.Select("INBOX", qresync=c.QResyncParams(67890007, 90060115194045000)),
    ),
    (
        b"t1 SELECT INBOX (QRESYNC (67890007 90060115194045000 41:211,214:541))",
        c.Select("INBOX", qresync=c.QResyncParams(67890007, 90060115194045000, seq("41:211,214:541"))),
    ),
    (
        b"t1 SELECT INBOX (QRESYNC (67890007 90060115194045000 1:* (1,3:5 41,43:45)))",
        c.Select(
            "INBOX",
            qresync=c.QResyncParams(67890007, 90060115194045000, seq("1:*"), seq("1,3:5"), seq("41,43:45")),
        ),
    ),
    (b"t1 CREATE Projects/2026", c.Create("Projects/2026")),
    (b"t1 CREATE Spam (USE (\\Junk))", c.Create("Spam", ("\\Junk",))),
    (b"t1 DELETE Old", c.Delete("Old")),
    (b"t1 RENAME Old New", c.Rename("Old", "New")),
    (b"t1 RENAME &ZeVnLIqe- &U,BTFw-", c.Rename("\u65e5\u672c\u8a9e", "\u53f0\u5317")),
    (b"t1 SUBSCRIBE Lists", c.Subscribe("Lists")),
    (b"t1 UNSUBSCRIBE Lists", c.Unsubscribe("Lists")),
    (b't1 LIST "" *', c.List("", ("*",))),
    (b't1 LIST "" %', c.List("", ("%",))),
    (b"t1 LIST ~peter/mail/ &U,BTFw-/*", c.List("~peter/mail/", ("\u53f0\u5317/*",))),
    (
        b't1 LIST (SUBSCRIBED RECURSIVEMATCH) "" ("INBOX" "Lists/%") RETURN (CHILDREN SPECIAL-USE)',
        c.List(
            "",
            ("INBOX", "Lists/%"),
            frozenset({c.ListSelection.SUBSCRIBED, c.ListSelection.RECURSIVEMATCH}),
            frozenset({c.ListReturn.CHILDREN, c.ListReturn.SPECIAL_USE}),
            None,
            True,
        ),
    ),
    (
        b't1 LIST "" % RETURN (STATUS (MESSAGES UNSEEN) SUBSCRIBED)',
        c.List(
            "",
            ("%",),
            returns=frozenset({c.ListReturn.SUBSCRIBED}),
            status=(c.StatusItem.MESSAGES, c.StatusItem.UNSEEN),
            extended=True,
        ),
    ),
    (
        b't1 LIST () "" ()'[:0] + b't1 LIST (SPECIAL-USE) "" *',
        c.List("", ("*",), frozenset({c.ListSelection.SPECIAL_USE}), extended=True),
    ),
    (b't1 LSUB "" *', c.Lsub("", "*")),
    (
        b"t1 STATUS INBOX (MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN HIGHESTMODSEQ SIZE)",
        c.Status(
            "INBOX",
            (
                c.StatusItem.MESSAGES,
                c.StatusItem.RECENT,
                c.StatusItem.UIDNEXT,
                c.StatusItem.UIDVALIDITY,
                c.StatusItem.UNSEEN,
                c.StatusItem.HIGHESTMODSEQ,
                c.StatusItem.SIZE,
            ),
        ),
    ),
    (b"t1 IDLE", c.Idle()),
    (b"t1 NAMESPACE", c.Namespace()),
    (b"t1 ENABLE CONDSTORE qresync", c.Enable(("CONDSTORE", "QRESYNC"))),
    (b'"t1 GETQUOTA ""'[1:], c.GetQuota("")),
    (b"t1 GETQUOTAROOT INBOX", c.GetQuotaRoot("INBOX")),
    (b'"t1 SETQUOTA "" (STORAGE 512)'[1:], c.SetQuota("", (("STORAGE", 512),))),
    (b"t1 CHECK", c.Check()),
    (b"t1 CLOSE", c.Close()),
    (b"t1 UNSELECT", c.Unselect()),
    (b"t1 EXPUNGE", c.Expunge()),
    (b"t1 UID EXPUNGE 3:5,9", c.Expunge(seq("3:5,9"))),
    (b"t1 COPY 2:4 Archive", c.Copy(seq("2:4"), "Archive")),
    (b"t1 UID COPY 10:* Trash", c.Copy(seq("10:*"), "Trash", uid=True)),
    (b"t1 MOVE 1 Junk", c.Move(seq("1"), "Junk")),
    (b"t1 UID MOVE 5,7 Junk", c.Move(seq("5,7"), "Junk", uid=True)),
    (b"t1 STORE 1:3 +FLAGS (\\Seen)", c.Store(seq("1:3"), c.StoreMode.ADD, ("\\Seen",))),
    (
        b"t1 STORE 1 FLAGS.SILENT (\\deleted $Junk)",
        c.Store(seq("1"), c.StoreMode.REPLACE, ("\\Deleted", "$Junk"), True),
    ),
    (b"t1 UID STORE 4 -FLAGS \\Flagged", c.Store(seq("4"), c.StoreMode.REMOVE, ("\\Flagged",), uid=True)),
    (b"t1 STORE 1 FLAGS ()", c.Store(seq("1"), c.StoreMode.REPLACE, ())),
    (
        b"t1 UID STORE 1:* (UNCHANGEDSINCE 12345) +FLAGS.SILENT (\\Answered)",
        c.Store(seq("1:*"), c.StoreMode.ADD, ("\\Answered",), True, True, 12345),
    ),
    (b"t1 FETCH 1 FLAGS", c.Fetch(seq("1"), (fs.FLAGS,))),
    (b"t1 FETCH 1:* ALL", c.Fetch(seq("1:*"), fs.MACROS["ALL"])),
    (b"t1 FETCH 1 fast", c.Fetch(seq("1"), fs.MACROS["FAST"])),
    (b"t1 FETCH 1 FULL", c.Fetch(seq("1"), fs.MACROS["FULL"])),
    (b"t1 UID FETCH 1:50 (FLAGS ENVELOPE)", c.Fetch(seq("1:50"), (fs.FLAGS, fs.ENVELOPE), uid=True)),
    (
        b"t1 FETCH 2 (UID RFC822.SIZE INTERNALDATE BODYSTRUCTURE BODY RFC822 RFC822.HEADER RFC822.TEXT MODSEQ)",
        c.Fetch(
            seq("2"),
            (
                fs.UID,
                fs.RFC822_SIZE,
                fs.INTERNALDATE,
                fs.BODYSTRUCTURE,
                fs.BODY,
                fs.RFC822,
                fs.RFC822_HEADER,
                fs.RFC822_TEXT,
                fs.MODSEQ,
            ),
        ),
    ),
    (b"t1 FETCH 1 BODY[]", c.Fetch(seq("1"), (fs.BodySection(),))),
    (
        b"t1 FETCH 1 BODY.PEEK[]<0.1024>",
        c.Fetch(seq("1"), (fs.BodySection(fs.Section(), fs.Partial(0, 1024), peek=True),)),
    ),
    (
        b"t1 FETCH 1 (BODY[HEADER] BODY[TEXT] BODY[1] BODY[1.2.3] BODY[2.MIME] BODY[3.HEADER] BODY[1.TEXT])",
        c.Fetch(
            seq("1"),
            (
                fs.BodySection(fs.Section((), fs.TextSpec.HEADER)),
                fs.BodySection(fs.Section((), fs.TextSpec.TEXT)),
                fs.BodySection(fs.Section((1,))),
                fs.BodySection(fs.Section((1, 2, 3))),
                fs.BodySection(fs.Section((2,), fs.TextSpec.MIME)),
                fs.BodySection(fs.Section((3,), fs.TextSpec.HEADER)),
                fs.BodySection(fs.Section((1,), fs.TextSpec.TEXT)),
            ),
        ),
    ),
    (
        b'"t1 FETCH 1 (BODY.PEEK[HEADER.FIELDS (From To "Subject")] BODY[HEADER.FIELDS.NOT (Received)]<10.20>)'[1:],
        c.Fetch(
            seq("1"),
            (
                fs.BodySection(fs.Section((), fs.TextSpec.HEADER_FIELDS, ("From", "To", "Subject")), peek=True),
                fs.BodySection(fs.Section((), fs.TextSpec.HEADER_FIELDS_NOT, ("Received",)), fs.Partial(10, 20)),
            ),
        ),
    ),
    (
        b"t1 FETCH 1 (BINARY[1] BINARY.PEEK[2.1]<0.10> BINARY.SIZE[1])",
        c.Fetch(
            seq("1"),
            (fs.BinarySection((1,)), fs.BinarySection((2, 1), fs.Partial(0, 10), peek=True), fs.BinarySize((1,))),
        ),
    ),
    (b"t1 FETCH 1:* (FLAGS) (CHANGEDSINCE 12345)", c.Fetch(seq("1:*"), (fs.FLAGS,), changed_since=12345)),
    (
        b"t1 UID FETCH 1:* (FLAGS) (CHANGEDSINCE 12345 VANISHED)",
        c.Fetch(seq("1:*"), (fs.FLAGS,), uid=True, changed_since=12345, vanished=True),
    ),
    (b"t1 SEARCH ALL", c.Search(ss.SearchProgram(ss.AllKey()))),
    (b"t1 UID SEARCH UNSEEN", c.Search(ss.SearchProgram(ss.FlagKey("\\Seen", False)), uid=True)),
    (
        b"t1 SEARCH CHARSET UTF-8 FROM alice",
        c.Search(ss.SearchProgram(ss.HeaderKey("From", "alice"), "UTF-8"), charset_given=True),
    ),
    (
        b"t1 SEARCH CHARSET UTF-8 SUBJECT {5+}\r\n\xc3\xa9t\xc3\xa9",
        c.Search(ss.SearchProgram(ss.HeaderKey("Subject", "\u00e9t\u00e9"), "UTF-8"), charset_given=True),
    ),
    (
        b'"t1 SEARCH OR (FROM "a b" TO c) NOT SEEN 1:5,*'[1:],
        c.Search(
            ss.SearchProgram(
                ss.AndKey(
                    (
                        ss.OrKey(
                            ss.AndKey((ss.HeaderKey("From", "a b"), ss.HeaderKey("To", "c"))),
                            ss.NotKey(ss.FlagKey("\\Seen")),
                        ),
                        ss.SequenceKey(seq("1:5,*")),
                    )
                )
            )
        ),
    ),
    (
        b't1 SEARCH HEADER X-Spam "" BODY foo TEXT bar CC d BCC e',
        c.Search(
            ss.SearchProgram(
                ss.AndKey(
                    (
                        ss.HeaderKey("X-Spam", ""),
                        ss.BodyKey("foo"),
                        ss.TextKey("bar"),
                        ss.HeaderKey("Cc", "d"),
                        ss.HeaderKey("Bcc", "e"),
                    )
                )
            )
        ),
    ),
    (
        b't1 SEARCH SINCE 1-Feb-2026 BEFORE "15-Mar-2026" ON 3-jan-2026'
        b" SENTBEFORE 1-Jan-2000 SENTON 2-Jan-2000 SENTSINCE 3-Jan-2000",
        c.Search(
            ss.SearchProgram(
                ss.AndKey(
                    (
                        ss.DateKey(ss.DateField.INTERNAL, ss.DateRelation.SINCE, datetime.date(2026, 2, 1)),
                        ss.DateKey(ss.DateField.INTERNAL, ss.DateRelation.BEFORE, datetime.date(2026, 3, 15)),
                        ss.DateKey(ss.DateField.INTERNAL, ss.DateRelation.ON, datetime.date(2026, 1, 3)),
                        ss.DateKey(ss.DateField.SENT, ss.DateRelation.BEFORE, datetime.date(2000, 1, 1)),
                        ss.DateKey(ss.DateField.SENT, ss.DateRelation.ON, datetime.date(2000, 1, 2)),
                        ss.DateKey(ss.DateField.SENT, ss.DateRelation.SINCE, datetime.date(2000, 1, 3)),
                    )
                )
            )
        ),
    ),
    (
        b"t1 SEARCH LARGER 100 SMALLER 5000 KEYWORD $Junk UNKEYWORD $Later UID 1:10 NEW OLD",
        c.Search(
            ss.SearchProgram(
                ss.AndKey(
                    (
                        ss.SizeKey(ss.SizeRelation.LARGER, 100),
                        ss.SizeKey(ss.SizeRelation.SMALLER, 5000),
                        ss.FlagKey("$Junk"),
                        ss.FlagKey("$Later", False),
                        ss.SequenceKey(seq("1:10"), uid=True),
                        ss.SIMPLE_KEYS["NEW"],
                        ss.SIMPLE_KEYS["OLD"],
                    )
                )
            )
        ),
    ),
    (b"t1 SEARCH MODSEQ 620162338", c.Search(ss.SearchProgram(ss.ModSeqKey(620162338)))),
    (
        b'"t1 SEARCH MODSEQ "/flags/\\\\draft" all 620162338'[1:],
        c.Search(ss.SearchProgram(ss.ModSeqKey(620162338, "/flags/\\draft", "all"))),
    ),
    (
        b"t1 SEARCH RETURN (MIN MAX COUNT) UNDELETED",
        c.Search(
            ss.SearchProgram(ss.FlagKey("\\Deleted", False)),
            returns=frozenset({c.SearchReturn.MIN, c.SearchReturn.MAX, c.SearchReturn.COUNT}),
        ),
    ),
    (
        b"t1 UID SEARCH RETURN () CHARSET US-ASCII ALL",
        c.Search(ss.SearchProgram(ss.AllKey()), uid=True, returns=frozenset({c.SearchReturn.ALL}), charset_given=True),
    ),
    (b"t1 SEARCH $", c.Search(ss.SearchProgram(ss.SequenceKey(SequenceSet((), saved=True))))),
    (b"t1 SEARCH YOUNGER 60", c.Search(ss.SearchProgram(ss.AgeKey(ss.AgeRelation.YOUNGER, 60)))),
    (b"t1 SEARCH older 86400", c.Search(ss.SearchProgram(ss.AgeKey(ss.AgeRelation.OLDER, 86400)))),
    (
        b"t1 SORT (REVERSE date subject) utf-8 ALL",
        c.Sort(((SortCriterion.DATE, True), (SortCriterion.SUBJECT, False)), ss.SearchProgram(ss.AllKey(), "UTF-8")),
    ),
    (
        b"t1 UID SORT (DISPLAYFROM REVERSE DISPLAYTO) US-ASCII UNSEEN",
        c.Sort(
            ((SortCriterion.DISPLAYFROM, False), (SortCriterion.DISPLAYTO, True)),
            ss.SearchProgram(ss.FlagKey("\\Seen", False), "US-ASCII"),
            uid=True,
        ),
    ),
    (
        b"t1 SORT RETURN (MIN ALL) (ARRIVAL) UTF-8 1:5",
        c.Sort(
            ((SortCriterion.ARRIVAL, False),),
            ss.SearchProgram(ss.SequenceKey(SequenceSet.parse(b"1:5")), "UTF-8"),
            returns=frozenset({c.SearchReturn.MIN, c.SearchReturn.ALL}),
        ),
    ),
    (
        b"t1 SORT RETURN () (SIZE) UTF-8 ALL",
        c.Sort(
            ((SortCriterion.SIZE, False),),
            ss.SearchProgram(ss.AllKey(), "UTF-8"),
            returns=frozenset({c.SearchReturn.ALL}),
        ),
    ),
    (b"t1 THREAD REFS UTF-8 ALL", c.Thread(ThreadAlgorithm.REFS, ss.SearchProgram(ss.AllKey(), "UTF-8"))),
    (
        b"t1 UID THREAD references US-ASCII SUBJECT x",
        c.Thread(ThreadAlgorithm.REFERENCES, ss.SearchProgram(ss.HeaderKey("Subject", "x"), "US-ASCII"), uid=True),
    ),
    # RFC 5267 contexts
    (b't1 CANCELUPDATE "a1" "b\\"2"', c.CancelUpdate(("a1", 'b"2'))),
    (
        b"t1 SEARCH RETURN (UPDATE PARTIAL 5:1 COUNT) ALL",
        c.Search(
            ss.SearchProgram(ss.AllKey()),
            returns=frozenset({c.SearchReturn.UPDATE, c.SearchReturn.PARTIAL, c.SearchReturn.COUNT}),
            partial=(1, 5),
        ),
    ),
    (
        b"t1 UID SORT RETURN (CONTEXT) (DATE) UTF-8 ALL",
        c.Sort(
            ((SortCriterion.DATE, False),),
            ss.SearchProgram(ss.AllKey(), "UTF-8"),
            uid=True,
            returns=frozenset({c.SearchReturn.CONTEXT, c.SearchReturn.ALL}),
        ),
    ),
    # RFC 4469 CATENATE, RFC 6855 UTF8 APPEND data
    (
        b't1 APPEND Drafts (\\Seen) CATENATE (URL "/INBOX/;UID=1" TEXT {3+}\r\nabc URL x)',
        c.Append(
            "Drafts",
            (
                c.AppendMessage(
                    ("\\Seen",),
                    None,
                    b"",
                    catenate=(c.CatenateUrl("/INBOX/;UID=1"), c.CatenateText(b"abc"), c.CatenateUrl("x")),
                ),
            ),
        ),
    ),
    (b"t1 APPEND INBOX UTF8 (~{2+}\r\nhi)", c.Append("INBOX", (c.AppendMessage((), None, b"hi", True),))),
]


@pytest.mark.parametrize(("line", "expected"), CASES, ids=[case[0][:60].decode("latin-1") for case in CASES])
def test_parses_command(line: bytes, expected: c.Command) -> None:
    assert parse_one(line) == expected


def test_append_buffered_with_flags_date_and_multiappend() -> None:
    wire = (
        b't1 APPEND Drafts (\\Draft \\seen) " 7-Feb-1994 21:52:25 -0800" {5+}\r\nhello'
        b' "01-Jan-2026 00:00:00 +0100" {3+}\r\nabc ~{2+}\r\n\x00\x01\r\n'
    )
    parser = CommandParser(authenticated=True, stream_append=False)
    (event,) = feed(parser, wire)
    assert event == ev.CommandReceived(
        "t1",
        c.Append(
            "Drafts",
            (
                c.AppendMessage(("\\Draft", "\\Seen"), datetime.datetime(1994, 2, 7, 21, 52, 25, tzinfo=PST), b"hello"),
                c.AppendMessage((), datetime.datetime(2026, 1, 1, tzinfo=CET), b"abc"),
                c.AppendMessage((), None, b"\x00\x01", binary=True),
            ),
        ),
    )


def test_login_with_synchronizing_literals() -> None:
    parser = CommandParser()
    parser.receive_data(b"t1 LOGIN {3}\r\n")
    assert parser.next_event() == ev.ContinuationNeeded("t1", 3)
    parser.accept_literal()
    assert parser.next_event() is ev.NEED_DATA
    parser.receive_data(b"bob {6}\r\n")
    assert parser.next_event() == ev.ContinuationNeeded("t1", 6)
    parser.accept_literal()
    parser.receive_data(b"s\xc3\xa9cre\r\n")
    assert parser.next_event() == ev.CommandReceived("t1", c.Login("bob", "s\u00e9cre"))


def test_login_repr_hides_password() -> None:
    assert "hunter2" not in repr(c.Login("bob", "hunter2"))
    assert "hunter2" not in repr(ev.CommandReceived("t", c.Login("bob", "hunter2")))
    assert "QUJD" not in repr(c.Authenticate("PLAIN", b"QUJD"))


def test_utf8_mailbox_names_when_enabled() -> None:
    parser = CommandParser(authenticated=True, utf8_names=True)
    (event,) = feed(parser, 't1 SELECT "Entw\u00fcrfe"\r\n'.encode())
    assert event == ev.CommandReceived("t1", c.Select("Entw\u00fcrfe"))
    strict = CommandParser(authenticated=True)
    (bad,) = feed(strict, 't1 SELECT "Entw\u00fcrfe"\r\n'.encode())
    assert isinstance(bad, ev.BadCommand) and bad.tag == "t1"


def test_names_that_are_not_modified_utf7_parse_as_undecodable_not_bad() -> None:
    # Issue 11 item 8: such a name names no mailbox (NO), and a LIST pattern of it matches nothing (OK).
    parser = CommandParser(authenticated=True)
    (event,) = feed(parser, b"t1 SELECT &Jjo\r\n")  # unterminated mUTF-7 shift
    assert isinstance(event, ev.CommandReceived) and isinstance(event.command, c.Select)
    assert isinstance(event.command.mailbox, UndecodableName) and event.command.mailbox == "&Jjo"
    (event,) = feed(parser, b't2 LIST "" "!#$&\'+,-.0123456789:;<=>?@^_`|[}"\r\n')
    assert isinstance(event, ev.CommandReceived) and isinstance(event.command, c.List)
    assert isinstance(event.command.patterns[0], UndecodableName)


BAD_LINES = [
    b"t1 LOGIN bob",
    b"t1 LOGIN bob secret extra",
    b"t1 SELECT",
    b"t1 SELECT (CONDSTORE)",
    b"t1 SELECT INBOX (FOO)",
    b"t1 FETCH 0 FLAGS",
    b"t1 FETCH 1:x FLAGS",
    b"t1 FETCH 1 (FLAGS",
    b"t1 FETCH 1 BODY[0]",
    b"t1 FETCH 1 BODY[MIME]",
    b"t1 FETCH 1 BODY[HEADER.FIELDS ()]",
    b"t1 FETCH 1 NOSUCH",
    b"t1 FETCH 1 BODY[]<5>",
    b"t1 FETCH 1 FLAGS (VANISHED)",
    b"t1 FETCH 1 FLAGS (CHANGEDSINCE 5 VANISHED)",
    b"t1 STORE 1 FLAGS.LOUD (\\Seen)",
    b"t1 STORE 1 +FLAGS",
    b"t1 SEARCH",
    b"t1 SEARCH NOSUCHKEY",
    b"t1 SEARCH OR SEEN",
    b"t1 SEARCH SINCE 31-Feb-2026",
    b"t1 SEARCH SINCE 1-Foo-2026",
    b"t1 SEARCH LARGER x",
    b"t1 SEARCH (SEEN",
    b"t1 SEARCH " + b"NOT " * 100 + b"SEEN",
    b"t1 STATUS INBOX ()",
    b"t1 STATUS INBOX (FOO)",
    b't1 LIST (RECURSIVEMATCH) "" *',
    b't1 LIST "" * RETURN (BOGUS)',
    b"t1 ENABLE",
    b"t1 UID FROB 1",
    b"t1 AUTHENTICATE PLAIN not*base64",
    b"t1 AUTHENTICATE PLAIN abc",
    b't1 LOGIN "unterminated',
    b't1 LOGIN "bad\\escape" x',
    b"t1 NOOP extra",
    b"t1 APPEND INBOX",
    b"t1 APPEND INBOX (\\Seen)",
    b"t1 COPY 1",
    b"t1 LOGIN bob \xff\xfe",
    b"t1 FETCH " + b"9" * 6000 + b" FLAGS",
    b"t1 FETCH 1 BODY[]<" + b"9" * 6000 + b".1>",
    b"t1 SEARCH LARGER " + b"9" * 6000,
    b"t1 UID FETCH 1:* FLAGS (CHANGEDSINCE " + b"9" * 6000 + b")",
    b"t1 SELECT INBOX (QRESYNC (" + b"9" * 6000 + b" 1))",
    b"t1 APPEND INBOX {" + b"9" * 6000 + b"}",
    b"t1 SORT (DATE) ALL",
    b"t1 SORT () UTF-8 ALL",
    b"t1 SORT (REVERSE) UTF-8 ALL",
    b"t1 SORT (DATE REVERSE) UTF-8 ALL",
    b"t1 SORT (COLOUR) UTF-8 ALL",
    b"t1 SORT DATE UTF-8 ALL",
    b"t1 SORT (DATE) UTF-8",
    b"t1 SORT RETURN (FIRST) (DATE) UTF-8 ALL",
    b"t1 SORT (" + b"DATE " * 40 + b"DATE) UTF-8 ALL",
    b"t1 THREAD SPAGHETTI UTF-8 ALL",
    b"t1 CANCELUPDATE",
    b"t1 CANCELUPDATE a1",
    b"t1 SEARCH RETURN (PARTIAL 0:5) ALL",
    b"t1 SEARCH RETURN (PARTIAL 1:*) ALL",
    b"t1 SEARCH RETURN (ALL PARTIAL 1:5) ALL",
    b"t1 SEARCH RETURN (PARTIAL 1:2 PARTIAL 3:4) ALL",
    b"t1 APPEND INBOX CATENATE ()",
    b"t1 APPEND INBOX CATENATE (FOO x)",
    b"t1 APPEND INBOX CATENATE (URL)",
    b"t1 APPEND INBOX UTF8 ({2+}\r\nhi)",
    b"t1 APPEND INBOX UTF8 (~{2+}\r\nhi",
    b"t1 THREAD REFS ALL",
    b"t1 SEARCH YOUNGER 0",
    b"t1 SEARCH OLDER -5",
]


@pytest.mark.parametrize("line", BAD_LINES, ids=[line[:50].decode("latin-1") for line in BAD_LINES])
def test_bad_commands_are_tagged_bad(line: bytes) -> None:
    parser = CommandParser(authenticated=True, stream_append=False)
    events = feed(parser, line + b"\r\nt2 NOOP\r\n")
    assert len(events) == 2, events
    assert isinstance(events[0], ev.BadCommand)
    assert events[0].tag == "t1"
    assert events[1] == ev.CommandReceived("t2", c.Noop())


def test_unknown_charset_is_reported_as_such() -> None:
    (event,) = feed(CommandParser(authenticated=True), b"t1 SEARCH CHARSET KOI8-R FROM x\r\n")
    assert event == ev.BadCommand("t1", "unsupported charset KOI8-R", ev.BadReason.BAD_CHARSET)


def test_unknown_sort_and_thread_charsets_are_reported_as_such() -> None:
    events = feed(CommandParser(authenticated=True), b"t1 SORT (DATE) KOI8-R ALL\r\nt2 THREAD REFS X ALL\r\n")
    assert [(e.tag, e.reason) for e in events if isinstance(e, ev.BadCommand)] == [
        ("t1", ev.BadReason.BAD_CHARSET),
        ("t2", ev.BadReason.BAD_CHARSET),
    ]


def test_untagged_garbage_and_unknown_commands() -> None:
    events = feed(CommandParser(), b"* LOGIN a b\r\n+ x\r\nt1 FROB\r\n\r\nt2 NOOP\r\n")
    assert events == [
        ev.BadCommand(None, "invalid tag", ev.BadReason.BAD_TAG),
        ev.BadCommand(None, "invalid tag", ev.BadReason.BAD_TAG),
        ev.BadCommand("t1", "unknown command", ev.BadReason.UNKNOWN_COMMAND),
        ev.CommandReceived("t2", c.Noop()),
    ]


def test_star_resolves_in_sequence_sets() -> None:
    cmd = parse_one(b"t1 FETCH 5:*,2 FLAGS")
    assert isinstance(cmd, c.Fetch)
    assert cmd.sequence_set.ranges == (SeqRange(5, None), SeqRange(2, 2))
    assert cmd.sequence_set.resolve(7) == ((2, 2), (5, 7))
