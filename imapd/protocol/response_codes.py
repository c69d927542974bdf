"""Response codes ("[TRYCREATE]", "[UIDNEXT 5]", ...) and their wire form.

Codes without arguments are one enum; codes with arguments are small
dataclasses. `encode_code` gives the bracketed bytes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from imapd.protocol.sequence import SequenceSet


class Code(enum.Enum):
    """Argument-less codes (RFC 3501, 4315, 5530, 7162, 4469, 4978, 5182)."""

    ALERT = "ALERT"
    PARSE = "PARSE"
    READ_ONLY = "READ-ONLY"
    READ_WRITE = "READ-WRITE"
    TRYCREATE = "TRYCREATE"
    TOOBIG = "TOOBIG"
    NONEXISTENT = "NONEXISTENT"
    ALREADYEXISTS = "ALREADYEXISTS"
    AUTHENTICATIONFAILED = "AUTHENTICATIONFAILED"
    AUTHORIZATIONFAILED = "AUTHORIZATIONFAILED"
    EXPIRED = "EXPIRED"
    UNAVAILABLE = "UNAVAILABLE"
    OVERQUOTA = "OVERQUOTA"
    LIMIT = "LIMIT"
    CANNOT = "CANNOT"
    SERVERBUG = "SERVERBUG"
    CLIENTBUG = "CLIENTBUG"
    CLOSED = "CLOSED"
    INUSE = "INUSE"
    NOPERM = "NOPERM"
    CONTACTADMIN = "CONTACTADMIN"
    PRIVACYREQUIRED = "PRIVACYREQUIRED"
    NOMODSEQ = "NOMODSEQ"
    EXPUNGEISSUED = "EXPUNGEISSUED"
    CORRUPTION = "CORRUPTION"
    HASCHILDREN = "HASCHILDREN"
    UIDNOTSTICKY = "UIDNOTSTICKY"
    COMPRESSIONACTIVE = "COMPRESSIONACTIVE"
    NOTSAVED = "NOTSAVED"


@dataclass(frozen=True, slots=True)
class CapabilityCode:
    capabilities: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PermanentFlags:
    flags: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class UidValidity:
    value: int


@dataclass(frozen=True, slots=True)
class UidNext:
    value: int


@dataclass(frozen=True, slots=True)
class Unseen:
    value: int


@dataclass(frozen=True, slots=True)
class HighestModSeq:
    value: int


@dataclass(frozen=True, slots=True)
class AppendUid:
    """[APPENDUID uidvalidity uid-set] (RFC 4315); several UIDs for MULTIAPPEND."""

    uidvalidity: int
    uids: SequenceSet


@dataclass(frozen=True, slots=True)
class CopyUid:
    """[COPYUID uidvalidity source-uids dest-uids] (RFC 4315), sets in matching order."""

    uidvalidity: int
    source: SequenceSet
    destination: SequenceSet


@dataclass(frozen=True, slots=True)
class Modified:
    """[MODIFIED set] (RFC 7162): messages STORE ... UNCHANGEDSINCE did not change."""

    numbers: SequenceSet


@dataclass(frozen=True, slots=True)
class BadCharset:
    charsets: tuple[str, ...] = ("UTF-8", "US-ASCII")


ResponseCode = (
    Code
    | CapabilityCode
    | PermanentFlags
    | UidValidity
    | UidNext
    | Unseen
    | HighestModSeq
    | AppendUid
    | CopyUid
    | Modified
    | BadCharset
)


def encode_code(code: ResponseCode) -> bytes:
    if isinstance(code, Code):
        body = code.value.encode("ascii")
    elif isinstance(code, CapabilityCode):
        body = b"CAPABILITY " + " ".join(code.capabilities).encode("ascii")
    elif isinstance(code, PermanentFlags):
        body = b"PERMANENTFLAGS (" + " ".join(code.flags).encode("ascii") + b")"
    elif isinstance(code, UidValidity):
        body = b"UIDVALIDITY %d" % code.value
    elif isinstance(code, UidNext):
        body = b"UIDNEXT %d" % code.value
    elif isinstance(code, Unseen):
        body = b"UNSEEN %d" % code.value
    elif isinstance(code, HighestModSeq):
        body = b"HIGHESTMODSEQ %d" % code.value
    elif isinstance(code, AppendUid):
        body = b"APPENDUID %d %s" % (code.uidvalidity, code.uids.to_bytes())
    elif isinstance(code, CopyUid):
        body = b"COPYUID %d %s %s" % (code.uidvalidity, code.source.to_bytes(), code.destination.to_bytes())
    elif isinstance(code, Modified):
        body = b"MODIFIED " + code.numbers.to_bytes()
    else:
        body = b"BADCHARSET (" + " ".join(code.charsets).encode("ascii") + b")"
    return b"[" + body + b"]"
