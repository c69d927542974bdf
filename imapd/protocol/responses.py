"""Typed server responses and their exact wire bytes.

Every response is a frozen dataclass with `to_bytes()` (the whole line(s),
CRLF included). `response_chunks()` yields a response in pieces so FETCH
bodies (ChunkedLiteral values) are written without being joined. Mailbox
names are encoded to modified UTF-7 here; sets are written compressed
("1:3,5"). Response codes live in response_codes.py.
"""

from __future__ import annotations

import base64
import enum
from collections.abc import Iterator
from dataclasses import dataclass

from imapd.protocol import mutf7
from imapd.protocol.commands import StatusItem
from imapd.protocol.response_codes import ResponseCode, encode_code
from imapd.protocol.sequence import SequenceSet
from imapd.protocol.values import List, String, encode, encode_chunks, is_atom_safe

_CRLF = b"\r\n"


class Condition(enum.Enum):
    OK = "OK"
    NO = "NO"
    BAD = "BAD"
    PREAUTH = "PREAUTH"  # untagged only, as the greeting
    BYE = "BYE"  # untagged only


def _text(text: str) -> bytes:
    # A line break inside response text would end the response early: flatten it.
    # resp-text is 7-bit TEXT-CHAR in IMAP4rev1, so anything else becomes "?".
    return text.replace("\r", " ").replace("\n", " ").encode("ascii", "replace")


def _resp_text(code: ResponseCode | None, text: str) -> bytes:
    body = _text(text) or b"done"  # resp-text needs text after the code
    return body if code is None else encode_code(code) + b" " + body


def astring(value: bytes) -> bytes:
    """An astring: atom when possible, else quoted, else literal."""
    if is_atom_safe(value) and value.upper() != b"NIL":
        return value
    return encode(String(value))


def mailbox_bytes(name: str, *, utf8: bool = False) -> bytes:
    """A mailbox name on the wire (mUTF-7 unless the client enabled UTF8=ACCEPT)."""
    raw = name.encode("utf-8") if utf8 else mutf7.encode(name)
    return astring(raw)


@dataclass(frozen=True, slots=True)
class Tagged:
    tag: str
    condition: Condition
    text: str
    code: ResponseCode | None = None

    def to_bytes(self) -> bytes:
        if self.condition not in (Condition.OK, Condition.NO, Condition.BAD):
            raise ValueError("a tagged response is OK, NO or BAD")
        return b"%s %s %s\r\n" % (
            self.tag.encode("ascii"),
            self.condition.value.encode(),
            _resp_text(self.code, self.text),
        )


@dataclass(frozen=True, slots=True)
class Untagged:
    """* OK/NO/BAD/PREAUTH/BYE [code] text (greeting, alerts, BYE)."""

    condition: Condition
    text: str
    code: ResponseCode | None = None

    def to_bytes(self) -> bytes:
        return b"* %s %s\r\n" % (self.condition.value.encode(), _resp_text(self.code, self.text))


@dataclass(frozen=True, slots=True)
class Continuation:
    """+ text, or + base64(data) for a SASL challenge (data b"" gives "+ ")."""

    text: str = "Ready"
    data: bytes | None = None

    def to_bytes(self) -> bytes:
        if self.data is not None:
            return b"+ " + base64.b64encode(self.data) + _CRLF
        return b"+ " + _text(self.text) + _CRLF


@dataclass(frozen=True, slots=True)
class CapabilityData:
    capabilities: tuple[str, ...]

    def to_bytes(self) -> bytes:
        return b"* CAPABILITY " + " ".join(self.capabilities).encode("ascii") + _CRLF


@dataclass(frozen=True, slots=True)
class ListData:
    """* LIST (attrs) "/" name [extended data]; LSUB when `lsub`.

    `child_info_subscribed` adds ("CHILDINFO" ("SUBSCRIBED")) (RFC 5258
    RECURSIVEMATCH); `old_name` adds ("OLDNAME" ("name")) (RFC 5465/9051).
    """

    attributes: tuple[str, ...]
    delimiter: str | None
    mailbox: str
    lsub: bool = False
    child_info_subscribed: bool = False
    old_name: str | None = None
    utf8: bool = False

    def to_bytes(self) -> bytes:
        if self.delimiter is None:
            delim = b"NIL"
        else:
            delim = b'"' + self.delimiter.encode("ascii").replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
        out = b"* %s (%s) %s %s" % (
            b"LSUB" if self.lsub else b"LIST",
            " ".join(self.attributes).encode("ascii"),
            delim,
            mailbox_bytes(self.mailbox, utf8=self.utf8),
        )
        extended: list[bytes] = []
        if self.child_info_subscribed:
            extended.append(b'"CHILDINFO" ("SUBSCRIBED")')
        if self.old_name is not None:
            extended.append(b'"OLDNAME" (' + mailbox_bytes(self.old_name, utf8=self.utf8) + b")")
        if extended:
            out += b" (" + b" ".join(extended) + b")"
        return out + _CRLF


@dataclass(frozen=True, slots=True)
class StatusData:
    mailbox: str
    items: tuple[tuple[StatusItem, int], ...]
    utf8: bool = False

    def to_bytes(self) -> bytes:
        pairs = b" ".join(b"%s %d" % (item.value.encode("ascii"), value) for item, value in self.items)
        return b"* STATUS " + mailbox_bytes(self.mailbox, utf8=self.utf8) + b" (" + pairs + b")" + _CRLF


@dataclass(frozen=True, slots=True)
class FlagsData:
    flags: tuple[str, ...]

    def to_bytes(self) -> bytes:
        return b"* FLAGS (" + " ".join(self.flags).encode("ascii") + b")" + _CRLF


@dataclass(frozen=True, slots=True)
class Exists:
    count: int

    def to_bytes(self) -> bytes:
        return b"* %d EXISTS\r\n" % self.count


@dataclass(frozen=True, slots=True)
class Recent:
    count: int

    def to_bytes(self) -> bytes:
        return b"* %d RECENT\r\n" % self.count


@dataclass(frozen=True, slots=True)
class Expunge:
    sequence: int

    def to_bytes(self) -> bytes:
        return b"* %d EXPUNGE\r\n" % self.sequence


@dataclass(frozen=True, slots=True)
class FetchData:
    """* n FETCH (...): `data` is the item list from imap-message's renderer (fetch_render.fetch_list)."""

    sequence: int
    data: List

    def chunks(self) -> Iterator[bytes]:
        yield b"* %d FETCH " % self.sequence
        yield from encode_chunks(self.data)
        yield _CRLF

    def to_bytes(self) -> bytes:
        return b"".join(self.chunks())


@dataclass(frozen=True, slots=True)
class SearchData:
    """* SEARCH n... [(MODSEQ m)] (RFC 7162 adds the highest mod-sequence of the matches)."""

    numbers: tuple[int, ...]
    modseq: int | None = None

    def to_bytes(self) -> bytes:
        out = b"* SEARCH"
        if self.numbers:
            out += b" " + b" ".join(b"%d" % n for n in self.numbers)
        if self.modseq is not None:
            out += b" (MODSEQ %d)" % self.modseq
        return out + _CRLF


@dataclass(frozen=True, slots=True)
class ESearchData:
    """* ESEARCH (TAG "t") [UID] [MIN n] [MAX n] [COUNT n] [ALL set] [MODSEQ m] (RFC 4731)."""

    tag: str | None
    uid: bool
    min: int | None = None
    max: int | None = None
    count: int | None = None
    all: SequenceSet | None = None
    modseq: int | None = None

    def to_bytes(self) -> bytes:
        out = b"* ESEARCH"
        if self.tag is not None:
            out += b' (TAG "' + self.tag.encode("ascii") + b'")'
        if self.uid:
            out += b" UID"
        if self.min is not None:
            out += b" MIN %d" % self.min
        if self.max is not None:
            out += b" MAX %d" % self.max
        if self.count is not None:
            out += b" COUNT %d" % self.count
        if self.all is not None and self.all.ranges:
            out += b" ALL " + self.all.to_bytes()
        if self.modseq is not None:
            out += b" MODSEQ %d" % self.modseq
        return out + _CRLF


@dataclass(frozen=True, slots=True)
class Vanished:
    """* VANISHED [(EARLIER)] uid-set (RFC 7162 QRESYNC)."""

    uids: SequenceSet
    earlier: bool = False

    def to_bytes(self) -> bytes:
        return b"* VANISHED " + (b"(EARLIER) " if self.earlier else b"") + self.uids.to_bytes() + _CRLF


@dataclass(frozen=True, slots=True)
class Enabled:
    capabilities: tuple[str, ...]

    def to_bytes(self) -> bytes:
        out = b"* ENABLED"
        if self.capabilities:
            out += b" " + " ".join(self.capabilities).encode("ascii")
        return out + _CRLF


@dataclass(frozen=True, slots=True)
class IdData:
    """* ID NIL or * ID ("name" "mailha" ...) (RFC 2971)."""

    parameters: tuple[tuple[str, str | None], ...] | None

    def to_bytes(self) -> bytes:
        if not self.parameters:
            return b"* ID NIL\r\n"
        items: list[bytes] = []
        for key, value in self.parameters:
            items.append(encode(String(key.encode("utf-8"))))
            items.append(b"NIL" if value is None else encode(String(value.encode("utf-8"))))
        return b"* ID (" + b" ".join(items) + b")" + _CRLF


# A namespace: (prefix, delimiter) pairs, or None for NIL.
NamespaceList = tuple[tuple[str, str | None], ...] | None


@dataclass(frozen=True, slots=True)
class NamespaceData:
    """* NAMESPACE personal other shared (RFC 2342)."""

    personal: NamespaceList
    other: NamespaceList = None
    shared: NamespaceList = None

    def to_bytes(self) -> bytes:
        parts = [_namespace(ns) for ns in (self.personal, self.other, self.shared)]
        return b"* NAMESPACE " + b" ".join(parts) + _CRLF


def _namespace(ns: NamespaceList) -> bytes:
    if not ns:
        return b"NIL"
    out = []
    for prefix, delimiter in ns:
        delim = b"NIL" if delimiter is None else encode(String(delimiter.encode("ascii")))
        out.append(b"(" + encode(String(mutf7.encode(prefix))) + b" " + delim + b")")
    return b"(" + b"".join(out) + b")"


@dataclass(frozen=True, slots=True)
class QuotaData:
    """* QUOTA root (resource usage limit ...) (RFC 9208)."""

    root: str
    resources: tuple[tuple[str, int, int], ...]

    def to_bytes(self) -> bytes:
        res = b" ".join(b"%s %d %d" % (name.encode("ascii"), usage, limit) for name, usage, limit in self.resources)
        return b"* QUOTA " + astring(self.root.encode("utf-8")) + b" (" + res + b")" + _CRLF


@dataclass(frozen=True, slots=True)
class QuotaRootData:
    mailbox: str
    roots: tuple[str, ...]

    def to_bytes(self) -> bytes:
        out = b"* QUOTAROOT " + mailbox_bytes(self.mailbox)
        for root in self.roots:
            out += b" " + encode(String(root.encode("utf-8")))
        return out + _CRLF


Response = (
    Tagged
    | Untagged
    | Continuation
    | CapabilityData
    | ListData
    | StatusData
    | FlagsData
    | Exists
    | Recent
    | Expunge
    | FetchData
    | SearchData
    | ESearchData
    | Vanished
    | Enabled
    | IdData
    | NamespaceData
    | QuotaData
    | QuotaRootData
)


def response_chunks(response: Response) -> Iterator[bytes]:
    """The wire form in pieces: FETCH bodies are never joined into one buffer."""
    if isinstance(response, FetchData):
        yield from response.chunks()
    else:
        yield response.to_bytes()


def bye(text: str, code: ResponseCode | None = None) -> Untagged:
    return Untagged(Condition.BYE, text, code)
