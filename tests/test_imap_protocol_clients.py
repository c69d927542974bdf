"""Command lines as real clients write them (Thunderbird, mutt, mbsync, imaplib, imapclient) parse."""

from __future__ import annotations

import pytest

from imapd.protocol import commands as c
from imapd.protocol import events as ev
from imapd.protocol import fetch_spec as fs
from imapd.protocol.parser import CommandParser
from tests.imap_protocol_support import feed

CLIENT_LINES: list[tuple[bytes, type[c.Command]]] = [
    # Thunderbird
    (b"1 capability", c.Capability),
    (b'2 ID ("name" "Thunderbird" "version" "115.3.1")', c.Id),
    (b"4 enable CONDSTORE", c.Enable),
    (b'5 list (SUBSCRIBED) "" "*" return (SPECIAL-USE)', c.List),
    (b'6 list "" "*" RETURN (SUBSCRIBED CHILDREN SPECIAL-USE STATUS (MESSAGES UNSEEN UIDNEXT))', c.List),
    (b'7 select "INBOX" (CONDSTORE)', c.Select),
    (b"8 UID fetch 1:* (FLAGS) (CHANGEDSINCE 12)", c.Fetch),
    (
        b"9 UID fetch 3:5 (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (From To Cc Bcc Subject Date "
        b"Message-ID Priority X-Priority References Newsgroups In-Reply-To Content-Type Reply-To)])",
        c.Fetch,
    ),
    (b"10 UID fetch 4 (UID RFC822.SIZE FLAGS BODY.PEEK[])", c.Fetch),
    (b"11 uid store 4 +Flags (\\Seen)", c.Store),
    (b"12 UID MOVE 4 Trash", c.Move),
    (b"13 IDLE", c.Idle),
    (b"14 getquotaroot INBOX", c.GetQuotaRoot),
    # mutt
    (b"a0001 AUTHENTICATE PLAIN AGJvYgBzZWNyZXQ=", c.Authenticate),
    (b'a0002 LIST "" "*"', c.List),
    (b'a0003 STATUS "Sent" (MESSAGES)', c.Status),
    (
        b"a0004 UID FETCH 1:* (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS (DATE FROM SENDER"
        b" SUBJECT TO CC MESSAGE-ID REFERENCES CONTENT-TYPE CONTENT-DESCRIPTION IN-REPLY-TO REPLY-TO LINES"
        b" LIST-POST X-LABEL X-ORIGINAL-TO)])",
        c.Fetch,
    ),
    (b"a0005 UID STORE 7 +FLAGS.SILENT (\\Deleted)", c.Store),
    (b"a0006 UID EXPUNGE 7", c.Expunge),
    (b'a0007 UID COPY 3 "Archive/2026"', c.Copy),
    # mbsync
    (b"3 LOGIN bob {6+}\r\nsecret", c.Login),
    (b'5 LIST "" "*"', c.List),
    (b"6 SELECT Drafts", c.Select),
    (b"7 UID FETCH 1:* (UID FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (X-TUID)])", c.Fetch),
    (b"8 UID FETCH 12 (BODY.PEEK[])", c.Fetch),
    (b'9 APPEND "Drafts" (\\Seen) {5+}\r\nhello', c.Append),
    (b"10 UID SEARCH HEADER X-TUID 7o/Ctb6SpnvK", c.Search),
    (b"11 CLOSE", c.Close),
    # imaplib
    (b'ABCD1 LOGIN bob "p a s s"', c.Login),
    (b'ABCD2 APPEND INBOX () "07-Feb-1994 21:52:25 +0100" {5}\r\nhello', c.Append),
    (b"ABCD3 SEARCH CHARSET UTF-8 SUBJECT {5}\r\n\xc3\xa9t\xc3\xa9", c.Search),
    (b"ABCD4 UID SEARCH ALL", c.Search),
    (b"ABCD5 FETCH 1 (RFC822)", c.Fetch),
    (b"ABCD6 EXAMINE INBOX", c.Select),
    (b"ABCD7 NAMESPACE", c.Namespace),
    (b"ABCD8 UNSELECT", c.Unselect),
    # imapclient
    (b'BHEC3 SELECT "INBOX"', c.Select),
    (b"BHEC4 UID SEARCH NOT DELETED", c.Search),
    (b"BHEC5 UID FETCH 1:* (FLAGS) (CHANGEDSINCE 3 VANISHED)", c.Fetch),
    (b'BHEC6 SELECT "INBOX" (QRESYNC (1690000000 7 1:20))', c.Select),
    (b'BHEC7 UID SEARCH RETURN (MIN MAX COUNT) SINCE "28-Nov-2026"', c.Search),
    (b"BHEC8 ENABLE QRESYNC", c.Enable),
]


@pytest.mark.parametrize(("wire", "kind"), CLIENT_LINES, ids=[w[:40].decode("latin-1") for w, _ in CLIENT_LINES])
def test_client_line_parses(wire: bytes, kind: type[c.Command]) -> None:
    parser = CommandParser(authenticated=not wire.split(b" ")[1].upper().startswith((b"LOGIN", b"AUTH")))
    parser_events = feed(parser, wire + b"\r\n")
    commands = [e for e in parser_events if isinstance(e, ev.CommandReceived)]
    if kind is c.Append:
        # streamed: the message arrives as events, ending with AppendEnd
        assert isinstance(parser_events[-1], ev.AppendEnd), parser_events
        assert b"".join(e.data for e in parser_events if isinstance(e, ev.AppendChunk)) == b"hello"
        return
    assert len(commands) == 1, parser_events
    assert isinstance(commands[0].command, kind)


def test_thunderbird_header_fields_kept_in_order() -> None:
    (event,) = feed(CommandParser(authenticated=True), b"9 UID fetch 3 (BODY.PEEK[HEADER.FIELDS (From To)])\r\n")
    assert isinstance(event, ev.CommandReceived) and isinstance(event.command, c.Fetch)
    (attr,) = event.command.attributes
    assert attr == fs.BodySection(fs.Section((), fs.TextSpec.HEADER_FIELDS, ("From", "To")), peek=True)
