"""The differential conformance engine: one scripted IMAP conversation, two servers.

A conversation is a name and a list of steps `(session, command)`: `session` names
a connection (opened and logged in as the conversation's own fresh user on first
use; a session named `anon...` is not logged in), `command` is the command without its tag, as bytes on the wire (`{n}`
literals are synchronising: the engine waits for `+`). `IDLE` waits for the
continuation; the same session's next step `DONE` ends it. `#sleep S` pauses
(Dovecot notices other sessions' changes asynchronously, e.g. during IDLE).
`$PLAIN` in a command is the SASL PLAIN response (base64) of the conversation's user. Tags are the engine's
(`a1`, `a2`, ... per session), so both servers see identical bytes.

Each answer (every line up to the tagged one) is normalised (`normalise`) and
the two servers' answers are compared step by step.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from tests.differential.wire import CLOSED, WireClient

Step = tuple[str, bytes]


@dataclass(frozen=True)
class Conversation:
    name: str
    steps: Sequence[Step]


@dataclass(frozen=True)
class Difference:
    conversation: str
    step: int  # index into steps
    command: bytes
    reference: tuple[bytes, ...]
    mailha: tuple[bytes, ...]

    def __str__(self) -> str:
        ref = "\n      ".join(line.decode("utf-8", "replace") for line in self.reference)
        got = "\n      ".join(line.decode("utf-8", "replace") for line in self.mailha)
        cmd = self.command.decode("utf-8", "replace")[:120]
        return f"{self.conversation} step {self.step}: {cmd}\n   dovecot:\n      {ref}\n   mailha:\n      {got}"


@dataclass
class Transcript:
    answers: list[tuple[bytes, ...]] = field(default_factory=list)


# ---- normalisation -------------------------------------------------------------------
_STATUS_TEXT: Final = re.compile(rb"^(\S+ (?:OK|NO|BAD|BYE|PREAUTH))(?: (\[[^\]]*\]))?.*$", re.S)
_CAPS: Final = re.compile(rb"(\[CAPABILITY|^\* CAPABILITY)[^\]\r\n]*")
_NUMBERED: Final = re.compile(rb"\b(UIDVALIDITY|HIGHESTMODSEQ|MODSEQ \(?|APPENDUID|COPYUID) ?\(?(\d+)")
_DATE: Final = re.compile(rb'" ?\d{1,2}-[A-Z][a-z]{2}-\d{4} \d\d:\d\d:\d\d [+-]\d{4}"')
_ID: Final = re.compile(rb"^\* ID .*$", re.S)
_EXPUNGE: Final = re.compile(rb"^\* \d+ EXPUNGE$")
_FETCH: Final = re.compile(rb"^(\* \d+ FETCH )\((.*)\)$", re.S)
_FLAG_LIST: Final = re.compile(rb"((?:^\* FLAGS|PERMANENTFLAGS) )\(([^)]*)\)")
_ATOM_SAFE: Final = re.compile(rb'"([A-Za-z0-9_.&/+-]+)"')
_STATUS_ITEMS: Final = re.compile(rb"^(\* STATUS .* )\(([^()]*)\)$")
_LITERAL_AT: Final = re.compile(rb"\{(\d+)\+?\}\r\n")


def _value_end(data: bytes, i: int) -> int:
    """End of the value (or item name) starting at i: a list, string, literal or atom."""
    if data[i : i + 1] == b'"':
        j = i + 1
        while data[j : j + 1] != b'"':
            j += 2 if data[j : j + 1] == b"\\" else 1
        return j + 1
    if m := _LITERAL_AT.match(data, i):
        return m.end() + int(m.group(1))
    depth, j = 0, i
    while j < len(data):
        ch = data[j : j + 1]
        if ch in (b"(", b"["):
            depth += 1
        elif ch in (b")", b"]"):
            if depth == 0:
                return j
            depth -= 1
            if depth == 0 and ch == b")" and data[i : i + 1] == b"(":
                return j + 1
        elif ch == b'"':
            j = _value_end(data, j) - 1
        elif (m := _LITERAL_AT.match(data, j)) is not None:
            j = m.end() + int(m.group(1)) - 1
        elif ch == b" " and depth == 0:
            return j
        j += 1
    return j


def _fetch_items(body: bytes) -> list[tuple[bytes, bytes]]:
    items, i = [], 0
    while i < len(body):
        end = _value_end(body, i)
        name = body[i:end].upper()
        i = end + 1
        end = _value_end(body, i)
        value = body[i:end]
        if name == b"FLAGS":
            value = b"(" + b" ".join(sorted(value[1:-1].split())) + b")"
        elif name in (b"BODY", b"BODYSTRUCTURE"):
            value = value.upper()  # types, subtypes, parameter names and encodings are case-insensitive
        items.append((name, value))
        i = end + 1
    return sorted(items)


def _line(raw: bytes) -> bytes:
    line = raw.rstrip(b"\r\n")
    if (m := _STATUS_ITEMS.match(line)) is not None:
        pairs = m.group(2).split()
        status_items = sorted(b"%s %s" % (pairs[i], pairs[i + 1]) for i in range(0, len(pairs) - 1, 2))
        line = m.group(1) + b"(" + b" ".join(status_items) + b")"
    line = _CAPS.sub(rb"\1 <caps>", line)
    line = _NUMBERED.sub(lambda m: m.group(1) + b"<n>", line)
    line = _DATE.sub(b'"<date>"', line)
    line = _ID.sub(b"* ID <server>", line)
    if line.startswith((b"* LIST ", b"* LSUB ", b"* STATUS ")):
        line = _ATOM_SAFE.sub(rb"\1", line)  # quoted or atom: the same name
    line = _FLAG_LIST.sub(lambda m: m.group(1) + b"(" + b" ".join(sorted(m.group(2).split())) + b")", line)
    if m := _FETCH.match(line):
        try:
            fetch_items = _fetch_items(m.group(2))
        except IndexError:
            return line
        return m.group(1) + b"(" + b" ".join(n + b" " + v for n, v in fetch_items) + b")"
    m = _STATUS_TEXT.match(line)
    if m and not line.startswith(b"* STATUS"):
        # Human text after the status (and its response code) is free-form.
        line = m.group(1) + (b" " + m.group(2) if m.group(2) else b"")
    return line


_KEEPALIVE: Final = b"* OK Still here"


def normalise(lines: Iterable[bytes]) -> tuple[bytes, ...]:
    """Untagged lines sorted (their order is free) except EXPUNGEs, which keep theirs; tagged last.

    An IDLE keepalive (`* OK Still here`) is dropped: either server may send one at any
    moment (Dovecot times its first one from a hash of user and address, anywhere within
    imap_idle_notify_interval), so it says nothing about the command it lands in."""
    lines = [_line(raw) for raw in lines if raw.rstrip(b"\r\n") != _KEEPALIVE]
    if not lines:
        return ()
    body, last = lines[:-1], lines[-1]
    if last.startswith((b"* ", b"+")):
        body, last = lines, b""
    expunges = [line for line in body if _EXPUNGE.match(line)]
    others = sorted(line for line in body if not _EXPUNGE.match(line))
    return (*others, *expunges, *((last,) if last else ()))


# ---- running ------------------------------------------------------------------------------
class Runner:
    """Plays conversations against one server on `port`, each as a fresh user from `users`."""

    def __init__(self, port: int) -> None:
        self.port = port

    def play(self, conversation: Conversation, user: str, password: str) -> Transcript:
        sessions: dict[str, WireClient] = {}
        tags: dict[str, int] = {}
        idling: dict[str, bytes] = {}
        logged_in: set[str] = set()
        out = Transcript()
        try:
            for name, raw_command in conversation.steps:
                plain = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode())
                command = raw_command.replace(b"$PLAIN", plain)
                client = sessions.get(name)
                if client is None:
                    client = sessions[name] = WireClient(self.port)
                if name not in logged_in and not name.startswith("anon"):
                    logged_in.add(name)
                    login = b"LOGIN " + _astring(user) + b" " + _astring(password)
                    answer = client.command(b"L", login)
                    if not answer[-1].startswith(b"L OK"):
                        raise RuntimeError(f"login failed: {answer!r}")
                if command.startswith(b"#sleep "):
                    time.sleep(float(command.split()[1]))  # let a server's asynchronous notice arrive
                    out.answers.append(())
                    continue
                if name in idling and command.upper() == b"DONE":
                    tag = idling.pop(name)
                    client.sock.sendall(b"DONE\r\n")
                    out.answers.append(normalise(client.until(tag)))
                    continue
                tags[name] = tags.get(name, 0) + 1
                tag = b"%s%d" % (name.encode(), tags[name])
                if command.upper() == b"IDLE":
                    client.sock.sendall(tag + b" IDLE\r\n")
                    lines = [client.read_line()]
                    while not lines[-1].startswith((b"+", tag + b" ")):
                        lines.append(client.read_line())
                    if lines[-1].startswith(b"+"):
                        idling[name] = tag
                    out.answers.append(normalise(lines))
                    continue
                try:
                    answer = client.command(tag, command)
                except OSError as exc:  # reset while sending
                    answer = [CLOSED, repr(exc).encode()]
                out.answers.append(normalise(answer))
                if answer[-1] == CLOSED or command.upper() == b"LOGOUT":
                    client.close()
                    del sessions[name]
                    logged_in.discard(name)
        finally:
            for client in sessions.values():
                client.close()
        return out


def _astring(text: str) -> bytes:
    return b'"' + text.encode() + b'"'


def compare(
    conversation: Conversation,
    reference: Transcript,
    mailha: Transcript,
    extra_lines: Sequence[re.Pattern[bytes]] = (),
    extra_codes: frozenset[bytes] = frozenset(),
) -> list[Difference]:
    """Steps whose answers differ. Ignored: a mailha line matching `extra_lines` where Dovecot has
    none, and a response code of `extra_codes` (with its arguments) on mailha's tagged line where
    Dovecot's has none."""
    out = []
    for i, (ref, got) in enumerate(zip(reference.answers, mailha.answers, strict=True)):
        for pattern in extra_lines:
            if not any(pattern.search(line) for line in ref):
                got = tuple(line for line in got if not pattern.search(line))
        if ref and got and b"[" not in ref[-1]:
            m = re.match(rb"^(\S+ (?:NO|OK)) \[([A-Z]+)(?: [^\]]*)?\]$", got[-1])
            if m and m.group(2) in extra_codes:
                got = (*got[:-1], m.group(1))
        if ref != got:
            out.append(Difference(conversation.name, i, conversation.steps[i][1], ref, got))
    return out


def steps(session: str, *commands: bytes | str) -> list[Step]:
    """Several commands of one session in a row."""
    return [(session, c.encode() if isinstance(c, str) else c) for c in commands]


def literal(data: bytes) -> bytes:
    return b"{%d}\r\n" % len(data) + data
