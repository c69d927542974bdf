"""A deterministic, realistic mail corpus for the large-mailbox benchmark.

Messages of 2-8 KB with real-looking headers (names, addresses, Date,
Message-ID, a subject of common words), a text/plain body, and 1% with a
50 KB base64 attachment. Every 100th message (n % 100 == 7) carries
SUBJECT_MARKER in its subject, and every 100th (n % 100 == 42) BODY_MARKER in
its body: the 1%-hit words SEARCH SUBJECT and SEARCH TEXT look for. The same
seed always gives the same bytes, so two servers are filled alike.
"""

from __future__ import annotations

import base64
import random
from typing import Final

SUBJECT_MARKER: Final = "zephyrine"
BODY_MARKER: Final = "quillwort"
_WORD_TEXT: Final = (
    "the of and to in is was for on that with as by at from this have not are but had his they you which one "
    "were all we her she there been if more when will would who so no out up into than them can only other new "
    "some could time these two may first then do any like my now over such our man me even most made after also "
    "did many before must through back years where much your way well down should because each just those people "
    "how too little state good very make world still own see men work long get here between both life being under "
    "never day same another know while last might us great old year off come since against go came right used "
    "take three meeting report budget project review schedule invoice update quarterly release draft contract "
    "customer support server backup planning agenda minutes proposal travel holiday lunch team office design"
)
WORDS: Final = tuple(_WORD_TEXT.split())
FIRST: Final = tuple(
    [
        "Anna",
        "Ben",
        "Clara",
        "David",
        "Eva",
        "Felix",
        "Greta",
        "Hugo",
        "Ida",
        "Jonas",
        "Karla",
        "Lukas",
        "Maria",
        "Nils",
        "Olga",
        "Paul",
        "Sven",
    ]
)
LAST: Final = tuple(
    [
        "Meyer",
        "Schmidt",
        "Novak",
        "Rossi",
        "Dubois",
        "Jensen",
        "Silva",
        "Kowalski",
        "Horvat",
        "Berg",
        "Lind",
        "Costa",
        "Weber",
    ]
)
DOMAINS: Final = ("example.org", "example.com", "example.net", "mail.example.org")
T0: Final = 1_700_000_000


def _person(rng: random.Random) -> tuple[str, str]:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    return f"{first} {last}", f"{first.lower()}.{last.lower()}@{rng.choice(DOMAINS)}"


def _sentence(rng: random.Random, n: int) -> str:
    words = [rng.choice(WORDS) for _ in range(n)]
    return " ".join(words).capitalize()


def message(n: int, seed: int = 1) -> bytes:
    """Message number n (0-based) of the corpus, CRLF line ends."""
    rng = random.Random(seed * 1_000_003 + n)
    name, addr = _person(rng)
    to_name, to_addr = _person(rng)
    subject = _sentence(rng, rng.randint(3, 7))
    if n % 100 == 7:
        subject += f" {SUBJECT_MARKER}"
    when = T0 + n * 61
    date = f"Tue, 14 Nov 2023 {(when // 3600) % 24:02d}:{(when // 60) % 60:02d}:{when % 60:02d} +0000"
    head = [
        f"Return-Path: <{addr}>",
        f"From: {name} <{addr}>",
        f"To: {to_name} <{to_addr}>",
        f"Subject: {subject}",
        f"Date: {date}",
        f"Message-ID: <{n}.{seed}.{rng.randrange(1 << 30)}@{addr.split('@')[1]}>",
        "MIME-Version: 1.0",
    ]
    if rng.random() < 0.3:
        cc_name, cc_addr = _person(rng)
        head.insert(3, f"Cc: {cc_name} <{cc_addr}>")
    target = rng.randint(2048, 8192)
    lines: list[str] = []
    size = sum(len(h) + 2 for h in head) + 60
    while size < target:
        line = _sentence(rng, rng.randint(8, 13)) + "."
        lines.append(line)
        size += len(line) + 2
    if n % 100 == 42:
        lines.insert(len(lines) // 2, f"Please see the {BODY_MARKER} notes.")
    text = "\r\n".join(lines) + "\r\n"
    if n % 100 != 99:
        head.append("Content-Type: text/plain; charset=utf-8")
        head.append("Content-Transfer-Encoding: 8bit")
        return ("\r\n".join(head) + "\r\n\r\n" + text).encode()
    blob = base64.encodebytes(rng.randbytes(37_500)).replace(b"\n", b"\r\n").decode()  # ~50 KB encoded
    boundary = f"=_b{n}"
    head.append(f'Content-Type: multipart/mixed; boundary="{boundary}"')
    body = (
        f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}"
        f"--{boundary}\r\nContent-Type: application/pdf; name=report.pdf\r\n"
        f"Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=report.pdf\r\n\r\n"
        f"{blob}--{boundary}--\r\n"
    )
    return ("\r\n".join(head) + "\r\n\r\n" + body).encode()
