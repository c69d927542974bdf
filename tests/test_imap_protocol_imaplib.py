"""Python's imaplib talking to a minimal loop built only from the protocol core.

No mail store: the loop answers each command with canned data, and the test
asserts the typed commands the core produced from imaplib's real bytes
(quoted and literal strings, synchronizing literals for APPEND and 8-bit
SEARCH, IDLE-less command flow).
"""

from __future__ import annotations

import datetime
import imaplib
import socket
import threading

from imapd.protocol import commands as c
from imapd.protocol import events as ev
from imapd.protocol import fetch_spec as fs
from imapd.protocol import search_spec as ss
from imapd.protocol.parser import CommandParser
from imapd.protocol.sequence import SequenceSet

CAPS = b"IMAP4rev1 AUTH=PLAIN UIDPLUS MOVE"


def _answer(event: ev.Event, parser: CommandParser) -> bytes:
    """Canned wire bytes: this loop tests the parser, not the responses a session builds."""
    if isinstance(event, ev.ContinuationNeeded):
        parser.accept_literal()
        return b"+ go on\r\n"
    if isinstance(event, ev.AppendEnd):
        return event.tag.encode() + b" OK APPEND completed\r\n"
    if not isinstance(event, ev.CommandReceived):
        return b""
    done = event.tag.encode() + b" OK %s\r\n"
    cmd = event.command
    if isinstance(cmd, c.Capability):
        return b"* CAPABILITY " + CAPS + b"\r\n" + done % b"done"
    if isinstance(cmd, c.Login):
        parser.set_authenticated()
    elif isinstance(cmd, c.Select):
        return b"* FLAGS (\\Seen)\r\n* 2 EXISTS\r\n* 0 RECENT\r\n" + done % b"[READ-WRITE] selected"
    elif isinstance(cmd, c.Search):
        return b"* SEARCH 1 2\r\n" + done % b"SEARCH completed"
    elif isinstance(cmd, c.Fetch):
        return b"* 1 FETCH (UID 7)\r\n" + done % b"FETCH completed"
    elif isinstance(cmd, c.Logout):
        return b"* BYE logging out\r\n" + done % b"LOGOUT completed"
    return done % b"done"


def _serve(sock: socket.socket, seen: list[ev.Event]) -> None:
    parser = CommandParser(stream_append=True)
    sock.sendall(b"* OK ready\r\n")
    with sock:
        while data := sock.recv(65536):
            parser.receive_data(data)
            while (event := parser.next_event()) is not ev.NEED_DATA:
                seen.append(event)
                try:
                    sock.sendall(_answer(event, parser))
                except (BrokenPipeError, ConnectionResetError):
                    return  # imaplib hangs up right after BYE


class _LoopbackIMAP(imaplib.IMAP4):
    """imaplib over one end of a socketpair instead of a TCP connection."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        super().__init__("loopback")

    def open(self, host: str = "", port: int = 0, timeout: float | None = None) -> None:
        self.sock = self._sock
        self.file = self.sock.makefile("rb")


def test_imaplib_session_through_the_core() -> None:
    client_sock, server_sock = socket.socketpair()
    seen: list[ev.Event] = []
    server = threading.Thread(target=_serve, args=(server_sock, seen), daemon=True)
    server.start()
    client_sock.settimeout(10)
    imap = _LoopbackIMAP(client_sock)
    try:
        imap.login("bob@example.org", 'p"w d\\x')
        imap.select("Entw\u00fcrfe".encode("utf-7").decode("ascii").replace("+", "&"))
        when = datetime.datetime(2026, 11, 28, 17, 41, 19, tzinfo=datetime.UTC)
        imap.append("INBOX", "(\\Seen)", when, b"Subject: hi\r\n\r\nbody\r\n")
        imap.literal = "\u00e9t\u00e9".encode()  # type: ignore[assignment]  # imaplib takes bytes here
        imap.search("UTF-8", "SUBJECT")
        imap.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (From)])")
        imap.uid("STORE", "7", "+FLAGS", "(\\Deleted)")
        imap.copy("1:2", "Archive")
        imap.expunge()
        imap.logout()
    finally:
        client_sock.close()
        server.join(10)
    commands = [e for e in seen if isinstance(e, ev.CommandReceived) and not isinstance(e.command, c.Capability)]
    typed = [e.command for e in commands]
    assert typed[0] == c.Login("bob@example.org", 'p"w d\\x')
    assert typed[1] == c.Select("Entw\u00fcrfe")
    assert typed[2] == c.Search(ss.SearchProgram(ss.HeaderKey("Subject", "\u00e9t\u00e9"), "UTF-8"), charset_given=True)
    assert typed[3] == c.Fetch(
        SequenceSet.parse(b"1:*"),
        (fs.FLAGS, fs.BodySection(fs.Section((), fs.TextSpec.HEADER_FIELDS, ("From",)), peek=True)),
        uid=True,
    )
    assert typed[4] == c.Store(SequenceSet.parse(b"7"), c.StoreMode.ADD, ("\\Deleted",), uid=True)
    assert typed[5] == c.Copy(SequenceSet.parse(b"1:2"), "Archive")
    assert typed[6:] == [c.Expunge(), c.Logout()]
    append = [e for e in seen if isinstance(e, ev.AppendStart | ev.AppendMessageStart | ev.AppendEnd)]
    assert append == [
        ev.AppendStart(append[0].tag, "INBOX"),
        ev.AppendMessageStart(
            append[0].tag, ("\\Seen",), datetime.datetime(2026, 11, 28, 17, 41, 19, tzinfo=datetime.UTC), 21
        ),
        ev.AppendEnd(append[0].tag),
    ]
    body = b"".join(e.data for e in seen if isinstance(e, ev.AppendChunk))
    assert body == b"Subject: hi\r\n\r\nbody\r\n"
    # imaplib synchronizes every literal: the password or APPEND needed "+" continuations
    assert any(isinstance(e, ev.ContinuationNeeded) for e in seen)
