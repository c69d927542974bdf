"""Comparator keys for SORT, THREAD and I18NLEVEL=1.

`casemap_key` is the i;unicode-casemap collation (RFC 5051): each character
is mapped to its titlecase form, then the text is put in normalisation form
KD, and the results compare as strings of code points. Dovecot uses the same
collation for SORT and THREAD (I18NLEVEL=1, RFC 5255).

`base_subject` is RFC 5256 section 2.1's extraction: decoded, whitespace
collapsed, "Re:", "Fwd:", "[list]" leaders and "(fwd)" trailers removed, and
"[fwd: ...]" unwrapped. It also says whether anything it removed marked the
message as a reply or forward (THREAD=REFERENCES step 6 needs that).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from typing import Final

from mailparse.decoding import decode_header_value

# RFC 5256 ABNF, case-insensitive:
#   subj-trailer = "(fwd)" / WSP
#   subj-blob    = "[" *BLOBCHAR "]" *WSP          BLOBCHAR: not "[" or "]"
#   subj-refwd   = ("re" / ("fw" ["d"])) *WSP [subj-blob] ":"
#   subj-leader  = (*subj-blob subj-refwd) / WSP
_BLOB: Final = r"\[[^\[\]]*\] *"
_REFWD_LEADER: Final = re.compile(rf"^(?:{_BLOB})*(?:re|fwd?) *(?:{_BLOB})?:", re.IGNORECASE)
_BLOB_LEADER: Final = re.compile(rf"^{_BLOB}")
_WHITESPACE: Final = re.compile(r"[ \t\r\n]+")
_MAX_SUBJECT: Final = 4096  # longer subjects are cut before the (linear) loops below


@functools.lru_cache(maxsize=8192)
def casemap_key(text: str) -> str:
    """The i;unicode-casemap sort key of `text` (RFC 5051)."""
    if text.isascii():
        # Titlecase of ASCII letters is their uppercase; NFKD leaves ASCII alone.
        return text.upper()
    return unicodedata.normalize("NFKD", "".join(ch.title() if len(ch.title()) == 1 else ch for ch in text))


def base_subject(raw: bytes | None) -> tuple[str, bool]:
    """(base subject, is reply or forward) of a Subject field value (RFC 5256 2.1)."""
    if not raw:
        return "", False
    text = _WHITESPACE.sub(" ", decode_header_value(raw[:_MAX_SUBJECT])).strip(" ")
    reply = False
    while True:
        # (2) trailers: "(fwd)" and whitespace, repeatedly.
        while True:
            if text.endswith(" "):
                text = text.rstrip(" ")
            elif text[-5:].lower() == "(fwd)":
                text, reply = text[:-5], True
            else:
                break
        # (3)-(5) leaders and blobs, repeatedly.
        while True:
            if text.startswith(" "):
                text = text.lstrip(" ")
                continue
            if (m := _REFWD_LEADER.match(text)) is not None:
                text, reply = text[m.end() :], True
                continue
            if (m := _BLOB_LEADER.match(text)) is not None and text[m.end() :].strip(" "):
                text = text[m.end() :]
                continue
            break
        # (6) "[fwd: ...]" wraps the whole subject: unwrap and go again.
        if len(text) >= 6 and text[:5].lower() == "[fwd:" and text.endswith("]"):
            text, reply = text[5:-1], True
            continue
        return text, reply
