"""OBJECTID (RFC 8474): the ids imapd hands out, from what the store keeps.

- MAILBOXID: "F" + the store's mailbox id and the mailbox's UIDVALIDITY (hex). The
  mailbox id is never reused and survives RENAME; a mailbox deleted and created
  again gets a new one, and a \\Noselect placeholder made selectable again a new
  UIDVALIDITY, so either way the MAILBOXID is new, as the RFC wants.
- EMAILID: "M" + the store's body id (hex). COPY and MOVE share the body, so a
  copy and a moved message keep the EMAILID (RFC 8474 5.1); body ids are never
  reused.
- THREADID: the store computes no thread ids; RFC 8474 5.2 has the server answer
  NIL then, and a SEARCH THREADID matches nothing.

Ids start with a letter so no client mistakes them for numbers (RFC 8474 7).
"""

from __future__ import annotations


def mailbox_id(store_id: int, uidvalidity: int) -> str:
    return f"F{store_id:x}-{uidvalidity:x}"


def email_id(body_id: int) -> str:
    return f"M{body_id:x}"
