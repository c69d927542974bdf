"""fetch_spec / search_spec: labels, macros, and what each item needs from the store."""

from __future__ import annotations

import pytest

from imapd.protocol import fetch_spec as F
from imapd.protocol import search_spec as S
from imapd.protocol.fetch_spec import BodySection, DataNeeds, Partial, Section, TextSpec


def test_macros_expand_per_rfc3501() -> None:
    assert F.expand_macro("all") == (F.FLAGS, F.INTERNALDATE, F.RFC822_SIZE, F.ENVELOPE)
    assert F.expand_macro("FAST") == (F.FLAGS, F.INTERNALDATE, F.RFC822_SIZE)
    assert F.expand_macro("Full") == (F.FLAGS, F.INTERNALDATE, F.RFC822_SIZE, F.ENVELOPE, F.BODY)
    assert F.expand_macro("BODY") is None
    assert F.SIMPLE_BY_NAME["RFC822.SIZE"] == F.RFC822_SIZE


@pytest.mark.parametrize(
    ("attrs", "needs"),
    [
        ((F.FLAGS, F.UID, F.MODSEQ, F.INTERNALDATE, F.RFC822_SIZE), DataNeeds(header=False, body=False)),
        ((F.FLAGS, F.ENVELOPE), DataNeeds(header=True, body=False)),
        ((F.RFC822_HEADER, BodySection(Section((), TextSpec.HEADER_FIELDS, ("To",)))), DataNeeds(True, False)),
        ((F.ENVELOPE, F.BODYSTRUCTURE), DataNeeds(header=False, body=True)),
        ((BodySection(Section((1,), TextSpec.HEADER)),), DataNeeds(header=False, body=True)),
        ((BodySection(Section((), TextSpec.TEXT)),), DataNeeds(header=False, body=True)),
        ((F.BinarySize((1,)),), DataNeeds(header=False, body=True)),
    ],
)
def test_data_needs(attrs: tuple[F.FetchAttribute, ...], needs: DataNeeds) -> None:
    assert F.data_needs(attrs) == needs


def test_sets_seen() -> None:
    assert F.sets_seen((F.RFC822,))
    assert F.sets_seen((F.RFC822_TEXT,))
    assert F.sets_seen((BodySection(Section((1,))),))
    assert F.sets_seen((F.BinarySection((1,)),))
    assert not F.sets_seen((F.RFC822_HEADER, F.ENVELOPE, F.BODYSTRUCTURE, F.FLAGS, F.BinarySize((1,))))
    assert not F.sets_seen((BodySection(peek=True), F.BinarySection((1,), peek=True)))


def test_labels() -> None:
    assert F.RFC822_HEADER.label() == b"RFC822.HEADER"
    assert BodySection(Section((), TextSpec.HEADER), Partial(10, 5), peek=True).label() == b"BODY[HEADER]<10>"
    fields = Section((3,), TextSpec.HEADER_FIELDS_NOT, ("X-A", 'we"ird'))
    assert BodySection(fields).label() == b'BODY[3.HEADER.FIELDS.NOT (X-A "we\\"ird")]'
    assert F.BinarySection((1, 2), Partial(0, 9)).label() == b"BINARY[1.2]<0>"
    assert F.BinarySize().label() == b"BINARY.SIZE[]"


def test_uid_and_modseq_are_added_once() -> None:
    assert F.with_uid((F.FLAGS,)) == (F.UID, F.FLAGS)
    assert F.with_uid((F.FLAGS, F.UID)) == (F.FLAGS, F.UID)
    assert F.with_modseq((F.FLAGS,)) == (F.FLAGS, F.MODSEQ)
    assert F.with_modseq((F.MODSEQ,)) == (F.MODSEQ,)


@pytest.mark.parametrize(
    "bad",
    [
        lambda: Section((0,)),
        lambda: Section((), TextSpec.MIME),
        lambda: Section((), TextSpec.HEADER_FIELDS),
        lambda: Section((), TextSpec.HEADER, ("From",)),
        lambda: Partial(-1, 3),
    ],
)
def test_invalid_sections_are_rejected(bad: object) -> None:
    assert callable(bad)
    with pytest.raises(ValueError):
        bad()


def test_search_shorthands_map_to_general_keys() -> None:
    assert S.simple_key("new") == S.AndKey((S.FlagKey("\\Recent"), S.FlagKey("\\Seen", present=False)))
    assert S.simple_key("UNDRAFT") == S.FlagKey("\\Draft", present=False)
    assert S.simple_key("FROM") is None  # takes an argument
    assert S.ADDRESS_KEYS["BCC"] == "Bcc"
    assert S.DATE_KEYS["SENTON"] == (S.DateField.SENT, S.DateRelation.ON)
    tree = S.OrKey(S.NotKey(S.AllKey()), S.AndKey((S.ModSeqKey(1), S.BodyKey("x"))))
    assert [type(k).__name__ for k in S.walk(tree)] == ["OrKey", "NotKey", "AllKey", "AndKey", "ModSeqKey", "BodyKey"]
