"""GETMETADATA / SETMETADATA (RFC 5464): server ("") and mailbox annotations in the store.

The store owns the annotations and their bounds (store/metadata.py); here the
MAXSIZE option of GETMETADATA is applied (a longer value is left out and
counted in [METADATA LONGENTRIES n], the size of the longest one left out), an
entry asked for by name and not set is answered NIL, and the store's refusals
become [METADATA MAXSIZE n] / [METADATA TOOMANY].
"""

from __future__ import annotations

import re

from imapd.errors import StoreError, StoreErrorKind
from imapd.protocol import commands as c
from imapd.protocol.values import NIL, Atom, List, Literal, Raw, String, Value, encode
from imapd.session.error_map import Context
from imapd.session.mailbox_commands import mailbox_name
from imapd.session.session import Outcome, Session

_SCOPES = frozenset({"/private", "/shared"})
_ATOM_SAFE = re.compile(rb"[^\x00-\x20\x7f-\xff(){%*\"\\\]]+")


def _entry(name: str) -> Value:
    raw = name.encode("utf-8")
    return Atom(name) if _ATOM_SAFE.fullmatch(raw) else String(raw)


def _value(data: bytes) -> Value:
    if b"\x00" in data:
        return Raw(b"~{%d}\r\n" % len(data) + data)  # literal8 (RFC 5464 5: value = nstring / literal8)
    if any(b > 0x7E or b < 0x20 for b in data):
        return Literal(data)
    return String(data)


def _failed(s: Session, tag: str, exc: StoreError) -> Outcome:
    if exc.kind is StoreErrorKind.INVALID:
        s.tagged(tag, b"BAD", exc.message.encode("utf-8", "replace")[:200])
        return Outcome.CONTINUE
    return s.store_failed(tag, exc, Context.GENERAL)


async def getmetadata(s: Session, tag: str, cmd: c.GetMetadata) -> Outcome:
    assert s.user is not None
    try:
        found = await s.ctx.store.get_metadata(s.user, cmd.mailbox, cmd.entries, cmd.depth)
    except StoreError as exc:
        return _failed(s, tag, exc)
    pairs: dict[str, tuple[str, bytes | None]] = {}
    longest = 0
    for name, value in found:
        if cmd.max_size is not None and len(value) > cmd.max_size:
            longest = max(longest, len(value))
            continue
        pairs[name.lower()] = (name, value)
    for wanted in cmd.entries:
        key = wanted.lower()
        if key not in _SCOPES and key not in pairs and not any(n.lower() == key for n, _ in found):
            pairs[key] = (wanted, None)  # asked for and not set
    if pairs:
        items: list[Value] = []
        for key in sorted(pairs):
            entry, data = pairs[key]
            items += [_entry(entry), NIL if data is None else _value(data)]
        s.emit(b"* METADATA " + mailbox_name(cmd.mailbox) + b" " + encode(List(tuple(items))) + b"\r\n")
    code = b"[METADATA LONGENTRIES %d] " % longest if longest else b""
    s.tagged(tag, b"OK", code + b"GETMETADATA completed")
    return Outcome.CONTINUE


async def setmetadata(s: Session, tag: str, cmd: c.SetMetadata) -> Outcome:
    assert s.user is not None
    try:
        refusal = await s.ctx.store.set_metadata(s.user, cmd.mailbox, cmd.entries)
    except StoreError as exc:
        return _failed(s, tag, exc)
    if refusal is None:
        s.tagged(tag, b"OK", b"SETMETADATA completed")
    elif refusal.kind == "MAXSIZE":
        s.tagged(tag, b"NO", b"[METADATA MAXSIZE %d] Value too long" % refusal.max_size)
    else:
        s.tagged(tag, b"NO", b"[METADATA TOOMANY] Too many annotations")
    return Outcome.CONTINUE
