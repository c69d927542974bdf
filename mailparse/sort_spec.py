"""What SORT (RFC 5256, RFC 5957 DISPLAYFROM/DISPLAYTO) and THREAD can ask for.

The grammar produces these; `message.sort_keys` and `message.threads`
compute them. Kept here so the protocol core names them without depending
on the message layer.
"""

from __future__ import annotations

from enum import Enum


class SortCriterion(Enum):
    ARRIVAL = "ARRIVAL"
    CC = "CC"
    DATE = "DATE"
    FROM = "FROM"
    SIZE = "SIZE"
    SUBJECT = "SUBJECT"
    TO = "TO"
    DISPLAYFROM = "DISPLAYFROM"
    DISPLAYTO = "DISPLAYTO"


class ThreadAlgorithm(Enum):
    ORDEREDSUBJECT = "ORDEREDSUBJECT"
    REFERENCES = "REFERENCES"
    REFS = "REFS"
