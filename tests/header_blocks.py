"""Generated header blocks for property tests of the code that reads them (mailparse's head
facts, lmtpd's delivery-rule fields): fields from a given list of names, odd separators before
the colon, values of awkward characters, every line ending, folded continuation lines."""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import strategies as st

LINE_ENDS = st.sampled_from([b"\r\n", b"\n", b"\r", b""])


def header_blocks(
    names: Sequence[bytes],
    *,
    value_chars: str,
    value_size: int,
    max_fields: int,
    colons: Sequence[bytes] = (b":", b" :", b""),
    folds: Sequence[bytes] = (b" ", b"\t", b""),
    tails: Sequence[bytes] = (b"",),
) -> st.SearchStrategy[bytes]:
    """Up to `max_fields` fields named from `names`, each `name colon value end` and up to two
    continuation lines starting with one of `folds`, then one of `tails` (what follows a block:
    nothing, a blank line, a body)."""
    names_st = st.sampled_from(list(names))
    colons_st = st.sampled_from(list(colons))
    folds_st = st.sampled_from(list(folds))
    tails_st = st.sampled_from(list(tails))
    text = st.text(alphabet=st.sampled_from(value_chars), max_size=value_size).map(lambda s: s.encode("utf-8"))

    @st.composite
    def blocks(draw: st.DrawFn) -> bytes:
        out = b""
        for _ in range(draw(st.integers(0, max_fields))):
            out += draw(names_st) + draw(colons_st) + draw(text) + draw(LINE_ENDS)
            for _ in range(draw(st.integers(0, 2))):
                out += draw(folds_st) + draw(text) + draw(LINE_ENDS)
        return out + draw(tails_st)

    return blocks()
