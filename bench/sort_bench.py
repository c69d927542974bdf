"""`mailha bench sort`: SORT and THREAD on a 10,000-message mailbox, real store.

Starts a throwaway `mailha store serve` + `mailha imapd serve` (bench/imap_spawn),
fills one INBOX with generated mail (threads by References, "Re:" subjects,
display names, dates) by MULTIAPPEND, then times over a raw socket (one
command in flight, wall clock from send to the tagged OK):

- `sort_10k_cold_ms` / `thread_10k_cold_ms`: the first SORT (DATE) / THREAD
  REFERENCES of a mailbox, each in a fresh session right after its SELECT (p50 over
  `COLD_RUNS` copies of the mailbox, made by COPY so imapd has seen none of them):
  the keys come from the store, which computed them at append
  (store/message_facts.py), and imapd then caches them per process;
- `sort_10k_ms` / `thread_10k_ms`: p50 of `--runs` SORT (DATE) / THREAD REFERENCES
  over ALL, keys cached (warm);
- `sort_search_10k_ms`: p50 of SORT (SUBJECT) UTF-8 UNSEEN, whose messages the
  SEARCH program selects through one store fetch.

With `--dovecot`, the same mail and commands then run on a throwaway Dovecot
(bench/dovecot.py): `dovecot_<key>` and `<key>_vs_dovecot` (mailha / Dovecot).
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import statistics
import time
from typing import Any

from bench import dovecot
from bench.imap_spawn import SpawnedStack
from store.client import StoreClient

USER = "sorter"
PASSWORD = "sort-bench-pw"
COLD_RUNS = 3
_NAMES = ("Ann Example", "bob", "Carol C.", "Dan", "Émile", "frank", "Grete", "Hal")
_TOPICS = ("budget", "meeting", "release plan", "lunch", "outage", "hiring", "travel", "roadmap")


def corpus(count: int, seed: int = 7) -> list[bytes]:
    rng = random.Random(seed)
    out: list[bytes] = []
    for n in range(count):
        topic = f"{rng.choice(_TOPICS)} {n // 40}"
        refs = ""
        subject = topic
        if n >= 40 and rng.random() < 0.5:
            parent = rng.randrange(max(0, n - 40), n)
            refs = f"In-Reply-To: <m{parent}@bench>\r\nReferences: <m{parent}@bench>\r\n"
            subject = "Re: " + topic
        name = rng.choice(_NAMES)
        day, hour = 1 + n % 28, n % 24
        out.append(
            (
                f'From: "{name}" <{name.split()[0].lower()}{n % 13}@example.org>\r\nTo: team{n % 7}@example.org\r\n'
                f"Subject: {subject}\r\nDate: {day:02d} Nov 2026 {hour:02d}:{n % 60:02d}:00 +0000\r\n"
                f"Message-ID: <m{n}@bench>\r\n{refs}\r\nbody {n}\r\n"
            ).encode()
        )
    return out


class _Client:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=120)
        self.buf = b""
        self.n = 0
        self._until(b"\r\n")

    def _until(self, marker: bytes) -> bytes:
        while marker not in self.buf:
            data = self.sock.recv(1 << 20)
            if not data:
                raise RuntimeError("imapd closed the connection")
            self.buf += data
        end = self.buf.index(marker) + len(marker)
        out, self.buf = self.buf[:end], self.buf[end:]
        return out

    def command(self, text: bytes) -> tuple[bytes, float]:
        """The whole answer and the seconds from send to the end of the tagged line."""
        self.n += 1
        tag = b"b%d" % self.n
        start = time.perf_counter()
        self.sock.sendall(tag + b" " + text + b"\r\n")
        answer = b""
        while True:
            line = self._until(b"\r\n")
            answer += line
            if line.startswith(tag + b" "):
                elapsed = time.perf_counter() - start
                if not line.startswith(tag + b" OK"):
                    raise RuntimeError(f"{text[:40]!r}: {line!r}")
                return answer, elapsed


def measure(port: int, store_address: str, messages: int, runs: int) -> dict[str, Any]:
    """Fill a new user's INBOX on a running imapd + store and time SORT/THREAD (the keys above)."""
    with StoreClient(store_address) as store:
        store.create_user(USER, PASSWORD)
    return measure_server(port, messages, runs)


def measure_server(port: int, messages: int, runs: int) -> dict[str, Any]:
    """The keys above on any IMAP server on loopback `port` where USER/PASSWORD exists with an empty INBOX."""
    client = _Client(port)
    client.command(b"LOGIN " + USER.encode() + b" " + PASSWORD.encode())
    mail = corpus(messages)
    start = time.perf_counter()
    for i in range(0, len(mail), 1000):
        parts = [b"APPEND INBOX"] + [b" {%d+}\r\n" % len(m) + m for m in mail[i : i + 1000]]
        client.command(b"".join(parts))
    fill_s = time.perf_counter() - start
    client.command(b"SELECT INBOX")
    client.command(b"STORE 1:* +FLAGS.SILENT (\\Seen)")
    client.command(b"STORE 1:%d -FLAGS.SILENT (\\Seen)" % (messages // 2))
    for n in range(COLD_RUNS):
        for kind in (b"sort", b"thread"):
            client.command(b"CREATE cold-%s-%d" % (kind, n))
            client.command(b"COPY 1:* cold-%s-%d" % (kind, n))
    cold_sorts: list[float] = []
    cold_threads: list[float] = []
    for n in range(COLD_RUNS):
        for kind, command, into in (
            (b"sort", b"SORT (DATE) UTF-8 ALL", cold_sorts),
            (b"thread", b"THREAD REFERENCES UTF-8 ALL", cold_threads),
        ):
            fresh = _Client(port)
            fresh.command(b"LOGIN " + USER.encode() + b" " + PASSWORD.encode())
            fresh.command(b"SELECT cold-%s-%d" % (kind, n))
            answer, elapsed = fresh.command(command)
            if kind == b"sort":
                assert len(answer.split(b"\r\n", 1)[0].split()) == messages + 2, "SORT did not list every message"
            into.append(elapsed)
            fresh.command(b"LOGOUT")
            fresh.sock.close()
    sorts = [client.command(b"SORT (DATE) UTF-8 ALL")[1] for _ in range(runs)]
    threads = [client.command(b"THREAD REFERENCES UTF-8 ALL")[1] for _ in range(runs)]
    searched = [client.command(b"SORT (SUBJECT) UTF-8 UNSEEN")[1] for _ in range(runs)]
    client.command(b"LOGOUT")
    client.sock.close()
    return {
        "sort_messages": messages,
        "sort_fill_seconds": round(fill_s, 2),
        "sort_10k_cold_ms": round(statistics.median(cold_sorts) * 1000, 1),
        "thread_10k_cold_ms": round(statistics.median(cold_threads) * 1000, 1),
        "sort_cold_ms_all": [round(x * 1000, 1) for x in cold_sorts],
        "thread_cold_ms_all": [round(x * 1000, 1) for x in cold_threads],
        "sort_10k_ms": round(statistics.median(sorts) * 1000, 1),
        "thread_10k_ms": round(statistics.median(threads) * 1000, 1),
        "sort_search_10k_ms": round(statistics.median(searched) * 1000, 1),
        "sort_ms_all": [round(x * 1000, 1) for x in sorts],
        "thread_ms_all": [round(x * 1000, 1) for x in threads],
    }


_COMPARED = ("sort_10k_cold_ms", "thread_10k_cold_ms", "sort_10k_ms", "thread_10k_ms", "sort_search_10k_ms")


def run(messages: int, runs: int, *, with_dovecot: bool = False) -> dict[str, Any]:
    stack = SpawnedStack().start()
    try:
        result = measure(stack.port, stack.store_address, messages, runs)
        result["cpu_seconds"] = stack.cpu()
    finally:
        stack.stop()
    if with_dovecot:
        # The same mail and commands on a throwaway Dovecot, in the same run (bench/dovecot.py).
        with dovecot.DovecotStack().start({USER: PASSWORD}) as reference:
            theirs = measure_server(reference.imap_port, messages, runs)
        for key in _COMPARED:
            result["dovecot_" + key] = theirs[key]
            result[key.removesuffix("_ms") + "_vs_dovecot"] = round(result[key] / max(theirs[key], 0.1), 2)
    return result


def main(args: argparse.Namespace) -> int:
    result = run(args.messages, max(1, args.runs), with_dovecot=args.dovecot)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(result, indent=2) + "\n")
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:22} {value}")
    return 0
