"""The contract of imapd's store-client interface (imapd/store_client.py): the same cases run
against `FakeStore` (in memory, what the fast session tests use) and against the real store
(a `mailha store serve` process) through `GrpcStore`, remote-only and with the local LMDB
reader. The real store is the reference: each case records what every call answered (or the
error kind it raised) and the fake's and the local reader's records must equal the remote's.

Normalised, because they must differ and say nothing about behaviour:
- UIDVALIDITY: the store and the fake draw it from their own clocks and counters; only
  "the same mailbox keeps it, a new mailbox gets another" is compared (first-seen order).
- mailbox ids and EMAILIDs (body_id): counters shared by all users of one store, so their
  values depend on what earlier cases did; compared by first-seen order (which equality
  and which difference), as IMAP clients see them.
- SAVEDATE, and the internal date of an APPEND without one: "now" on either side;
  compared as "within a minute of now".
- the flag ids of a scan_index chunk: an encoding of the chunk, not a value; resolved to
  the flag set of each UID, and chunks are joined (their cut points are the store's choice).
- watch heartbeats: timing.
- user names: each case makes a fresh user per backend; compared as "<user>".
"""

from __future__ import annotations

import array
import dataclasses
import enum
import itertools
import pathlib
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from typing import Any

import pytest
import trio

from imapd.errors import StoreError
from imapd.store_client import AppendSpec, ChangeEvent, FetchRequest, FlagMode, IndexColumns, IndexQuery, StoreClient
from imapd.store_fake import FakeStore
from imapd.store_grpc import GrpcStore
from store.reader import LocalReader
from tests.store_fixtures import StoreServer

# The same --max-message-size on both sides: above GrpcStore's one-request cut-off (4 MiB), so both
# of its append paths (one request, streamed pieces) meet TOO_BIG and success.
MAX_MESSAGE = 5 * 1024 * 1024
PASSWORD = "contract-secret"
_users = itertools.count(1)
_USER_NAME = re.compile(r"u[0-9]+(?:fake|remote|local)")  # user names differ per backend (fresh users)


@pytest.fixture(scope="module")
def real_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StoreServer]:
    base = tmp_path_factory.mktemp("contract")
    server = StoreServer(base / "data", base / "s.sock", ("--fence-next", "--max-message-size", str(MAX_MESSAGE)))
    server.start()
    try:
        yield server
    finally:
        server.stop()


class Backend:
    """Makes users and one StoreClient of one implementation."""

    def __init__(self, kind: str, server: StoreServer) -> None:
        self.kind = kind
        self.server = server
        self.fake = FakeStore(max_message_size=MAX_MESSAGE) if kind == "fake" else None
        with server.client() as client:
            self.epoch = client.epoch()

    def user(self, quota: int = 0) -> str:
        name = f"u{next(_users)}{self.kind}"
        if self.fake is not None:
            self.fake.create_user(name, PASSWORD, quota)
        else:
            with self.server.client() as client:
                client.create_user(name, PASSWORD, quota=quota)
        return name

    def stale_client(self) -> StoreClient:
        """A client of an older writer epoch (a deposed imapd): its writes must be fenced."""
        if self.fake is not None:
            self.fake.client_epoch = self.epoch - 1
            return self.fake
        return GrpcStore(self.server.address, self.epoch - 1)

    def client(self) -> StoreClient:
        if self.fake is not None:
            return self.fake
        local = LocalReader(self.server.data_dir) if self.kind == "local" else None
        return GrpcStore(self.server.address, self.epoch, local=local)


class Norm:
    """Turns answers into comparable plain values (see the module docstring for each rule)."""

    ORDINAL = frozenset({"uidvalidity", "dest_uidvalidity", "mailbox_id", "dest_mailbox_id", "body_id"})

    def __init__(self) -> None:
        self.seen: dict[tuple[str, int], int] = {}

    def ordinal(self, key: str, value: int) -> object:
        if value == 0:
            return 0
        group = "mailbox" if "mailbox" in key else key.removeprefix("dest_")
        return f"{group}#{self.seen.setdefault((group, value), len(self.seen) + 1)}"

    def __call__(self, value: object, key: str = "") -> object:
        if isinstance(value, StoreError):
            return ("error", value.kind.value)
        if isinstance(value, enum.Enum):
            return value.name
        if key in self.ORDINAL and isinstance(value, int):
            return self.ordinal(key, value)
        if key in ("save_date", "now_date") and isinstance(value, int):
            return "now" if abs(value - time.time()) < 60 else value
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {f.name: self(getattr(value, f.name), f.name) for f in dataclasses.fields(value)}
        if isinstance(value, dict):
            return {self(k): self(v, k if isinstance(k, str) else key) for k, v in value.items()}
        if isinstance(value, (list, tuple, array.array)):
            return [self(v, key) for v in value]
        if isinstance(value, frozenset):
            return sorted(value)
        if isinstance(value, str):
            return _USER_NAME.sub("<user>", value)
        return value


class Probe:
    """Records each call's answer, or the kind of StoreError it raised."""

    def __init__(self, store: StoreClient) -> None:
        self.store = store
        self.norm = Norm()
        self.record: list[tuple[str, object]] = []

    async def __call__(self, label: str, call: Awaitable[Any]) -> Any:
        try:
            result = await call
        except StoreError as exc:
            self.record.append((label, self.norm(exc)))
            return None
        self.record.append((label, self.norm(result)))
        return result

    def note(self, label: str, value: object) -> None:
        self.record.append((label, self.norm(value)))

    async def fetch(self, label: str, user: str, box: int, request: FetchRequest) -> None:
        async def run() -> list[object]:
            return [m async for m in self.store.fetch(user, box, request)]

        await self(label, run())

    async def scan(self, label: str, user: str, box: int, query: IndexQuery) -> None:
        async def run() -> dict[str, object]:
            chunks: list[IndexColumns] = [c async for c in self.store.scan_index(user, box, query)]
            flag_sets: dict[int, tuple[str, ...]] = {}
            rows = []
            held, absent = {f.lower() for f in query.with_flags}, {f.lower() for f in query.without_flags}
            for chunk in chunks:
                flag_sets.update(chunk.flag_sets)
                for i, uid in enumerate(chunk.uids):
                    flags = {f.lower() for f in flag_sets[chunk.flag_ids[i]]}
                    if not held <= flags or not absent.isdisjoint(flags):
                        continue  # the flag filter is a hint a client may not rely on: the fake ignores it
                    row: dict[str, object] = {"uid": uid, "flags": sorted(flag_sets[chunk.flag_ids[i]])}
                    if query.with_modseqs:
                        row["modseq"] = chunk.modseqs[i]
                    if query.with_sizes_dates:
                        row.update(size=chunk.sizes[i], date=chunk.dates[i], tz=chunk.tz_offsets[i])
                    if query.with_sort_keys:
                        row["sort_keys"] = chunk.sort_keys[i]
                    rows.append(row)
            return {"rows": rows, "header_hits": chunks[0].header_hits, "text_hits": chunks[0].text_hits}

        await self(label, run())


async def _chunks(data: bytes, size: int = 7) -> AsyncIterator[bytes]:
    for at in range(0, len(data), size):
        yield data[at : at + size]


async def append(store: StoreClient, user: str, box: str, data: bytes, spec: AppendSpec, **kw: bool) -> Any:
    return await store.append(user, box, spec, len(data), _chunks(data, 7 if len(data) < 4096 else 64 * 1024), **kw)


def message(n: int, subject: str = "", body: str = "") -> bytes:
    subject = subject or f"note {n}"
    body = body or f"body number {n}"
    return (
        f"From: Ann <ann@example.org>\r\nTo: bob@example.org\r\nSubject: {subject}\r\n"
        f"Date: Mon, 7 Feb 1994 21:52:25 -0800\r\nMessage-ID: <m{n}@example.org>\r\n\r\n{body}\r\n"
    ).encode()


DATE = 760_000_000  # an explicit internal date, so both sides store the same one
Case = Callable[[Probe, Backend], Awaitable[None]]


async def case_authenticate(p: Probe, b: Backend) -> None:
    user = b.user()
    await p("right", p.store.authenticate(user, PASSWORD))
    await p("with domain", p.store.authenticate(f"{user}@example.org", PASSWORD))
    await p("wrong password", p.store.authenticate(user, "nope"))
    await p("right again", p.store.authenticate(user, PASSWORD))  # beside the store: from the local read
    await p("with domain again", p.store.authenticate(f"{user}@example.org", PASSWORD))
    await p("wrong after right", p.store.authenticate(user, PASSWORD + "x"))
    await p("unknown user", p.store.authenticate(f"{user}x", PASSWORD))
    await p("empty", p.store.authenticate("", ""))


async def case_mailbox_tree(p: Probe, b: Backend) -> None:
    user = b.user()
    s = p.store
    await p("defaults", s.list_mailboxes(user, with_status=True))
    await p("create nested", s.create_mailbox(user, "Work/2024/Q1"))
    await p("create special", s.create_mailbox(user, "Stuff", "\\Flagged"))
    await p("create again", s.create_mailbox(user, "Work/2024"))
    await p("create trailing slash", s.create_mailbox(user, "Trail/"))
    await p("create empty", s.create_mailbox(user, ""))
    await p("create double slash", s.create_mailbox(user, "a//b"))
    await p("create inbox", s.create_mailbox(user, "inbox"))
    await p("list", s.list_mailboxes(user))
    await p("subscribe", s.subscribe(user, "Work/2024", True))
    await p("subscribe missing", s.subscribe(user, "Ghost", True))
    await p("subscribed", s.list_mailboxes(user, subscribed_only=True))
    await p("unsubscribe missing", s.subscribe(user, "Ghost", False))
    await p("unsubscribe never", s.subscribe(user, "Never", False))
    await p("delete with children", s.delete_mailbox(user, "Work"))
    await p("delete inbox", s.delete_mailbox(user, "INBOX"))
    await p("delete unknown", s.delete_mailbox(user, "Nope"))
    await p("select noselect", s.select(user, "Work"))
    await p("status noselect", s.status(user, "Work"))
    await p("append noselect", append(s, user, "Work", message(1), AppendSpec()))
    await p("noselect listed", s.list_mailboxes(user, with_status=True))
    await p("delete noselect", s.delete_mailbox(user, "Work"))
    await p("rename into child", s.rename_mailbox(user, "Work", "Work/Sub"))
    await p("rename tree", s.rename_mailbox(user, "Work", "Job"))
    await p("rename new parents", s.rename_mailbox(user, "Stuff", "Deep/Er/Stuff"))
    await p("rename onto existing", s.rename_mailbox(user, "Job", "Sent"))
    await p("rename unknown", s.rename_mailbox(user, "Nope", "Other"))
    await p("after rename", s.list_mailboxes(user, with_status=True))
    await p("delete leaf", s.delete_mailbox(user, "Job/2024/Q1"))
    await p("delete subscribed", s.delete_mailbox(user, "Job/2024"))
    await p("lone subscription", s.list_mailboxes(user, subscribed_only=True))
    await p("recreate", s.create_mailbox(user, "Job/2024"))
    await p("recreate placeholder", s.create_mailbox(user, "Job"))
    for n in range(3):
        await append(s, user, "INBOX", message(n), AppendSpec(("\\Seen",) if n else (), DATE))
    box = (await s.select(user, "INBOX")).mailbox.mailbox_id
    await s.store_flags(user, box, "2", FlagMode.ADD, ["$Moved"])
    await s.store_flags(user, box, "1", FlagMode.ADD, ["\\Deleted"])
    await s.expunge(user, box, "1")  # a gap: the store renumbers
    await p("rename inbox", s.rename_mailbox(user, "INBOX", "Old/Inbox"))
    await p("inbox after", s.select(user, "INBOX"))
    await p("inbox vanished", s.vanished(user, box, 0))
    old = await p("renamed inbox", s.select(user, "Old/Inbox"))
    await p.fetch("renamed messages", user, old.mailbox.mailbox_id, FetchRequest("1:*", with_facts=True))
    await p("status", s.status(user, "Job/2024"))
    await p("status unknown", s.status(user, "Nope"))
    await p("select unknown", s.select(user, "Nope"))
    await p("unknown user", s.list_mailboxes(f"{user}x"))


async def case_append_select(p: Probe, b: Backend) -> None:
    user = b.user()
    s = p.store
    await p("empty select", s.select(user, "INBOX"))
    await p("flags+date", append(s, user, "INBOX", message(1), AppendSpec(("\\Seen", "$Label1"), DATE, 120)))
    await p("no flags", append(s, user, "INBOX", message(2), AppendSpec((), DATE, -300)))
    await p("deleted", append(s, user, "INBOX", message(3), AppendSpec(("\\Deleted", "\\Flagged"), DATE)))
    await p("lower inbox", append(s, user, "inbox", message(4), AppendSpec(("$Label1", "work"), DATE)))
    now = await p("now", append(s, user, "Drafts", message(5), AppendSpec()))
    if now is not None:
        async for m in s.fetch(user, now.mailbox_id, FetchRequest("1")):
            p.note("now date", {"now_date": m.meta.internal_date})
    await p("unknown mailbox", append(s, user, "Nope", message(6), AppendSpec()))
    await p("too big", append(s, user, "INBOX", b"x" * (MAX_MESSAGE + 1), AppendSpec()))
    big = message(11, body="y" * (MAX_MESSAGE - 600 * 1024))
    await p("streamed", s.append(user, "Junk", AppendSpec((), DATE), len(big), _chunks(big, 256 * 1024)))
    await p("at the bound", append(s, user, "Junk", b"z" * MAX_MESSAGE, AppendSpec((), DATE)))
    # The message whole, as imapd passes it: one request when small, pieces when not.
    await p("whole", s.append(user, "Junk", AppendSpec(("\\Draft",), DATE), len(message(12)), message(12)))
    await p("whole big", s.append(user, "Junk", AppendSpec((), DATE), len(big), big))
    await p.fetch("streamed back", user, (await s.status(user, "Junk")).mailbox_id, FetchRequest("1:*"))
    await p("multi", s.multi_append(user, "Sent", [(AppendSpec(("\\Answered",), DATE), message(n)) for n in (7, 8)]))
    await p(
        "multi one too big",
        s.multi_append(user, "Sent", [(AppendSpec(), message(9)), (AppendSpec(), b"y" * (MAX_MESSAGE + 1))]),
    )
    await p("multi unknown", s.multi_append(user, "Nope", [(AppendSpec(), message(10))]))
    selected = await p("select", s.select(user, "INBOX"))
    if selected is not None:
        # What it lets go differs by kind (the local reader's UID list); the answers after it do not.
        assert s.forget_mailbox(selected.mailbox.mailbox_id) >= 0
        await p("select after forget", s.select(user, "INBOX"))
    await p("status", s.status(user, "INBOX"))
    await p("status sent", s.status(user, "Sent"))
    await p("list", s.list_mailboxes(user, with_status=True))
    await p("quota", s.get_quota(user))


async def case_recent(p: Probe, b: Backend) -> None:
    user = b.user()
    s = p.store
    for n in range(3):
        await append(s, user, "INBOX", message(n), AppendSpec((), DATE))
    selected = await p("select", s.select(user, "INBOX"))
    box = selected.mailbox.mailbox_id
    await p("claim two", s.claim_recent(user, box, 3))
    await p("claim again", s.claim_recent(user, box, 3))
    await p("claim past uidnext", s.claim_recent(user, box, 100))
    await p("status", s.status(user, "INBOX"))
    await p("append claiming", append(s, user, "INBOX", message(9), AppendSpec(), claim_recent=True))
    await p("append not claiming", append(s, user, "INBOX", message(10), AppendSpec()))
    await p("select again", s.select(user, "INBOX"))
    await p("claim unknown box", s.claim_recent(user, 999_999, 3))


async def case_quota(p: Probe, b: Backend) -> None:
    user = b.user(quota=len(message(1)) * 3 + 10)
    s = p.store
    await p("one", append(s, user, "INBOX", message(1), AppendSpec((), DATE)))
    await p("two", s.multi_append(user, "INBOX", [(AppendSpec((), DATE), message(n)) for n in (2, 3)]))
    await p("over", append(s, user, "INBOX", message(4), AppendSpec((), DATE)))
    await p("multi over", s.multi_append(user, "Sent", [(AppendSpec((), DATE), message(n)) for n in (5, 6)]))
    box = (await s.select(user, "INBOX")).mailbox.mailbox_id
    await p("copy over", s.copy(user, box, "1", "Sent"))
    await p("move within quota", s.move(user, box, "1", "Sent"))
    await p("quota", s.get_quota(user))
    await p("quota unknown", s.get_quota(f"{user}x"))


async def _filled(p: Probe, user: str, count: int = 5) -> int:
    s = p.store
    flags = [("\\Seen",), (), ("\\Flagged", "$Important"), ("\\Seen", "\\Deleted"), ("\\Deleted",)]
    for n in range(count):
        body = "the quick brown fox" if n == 2 else ""
        await append(s, user, "INBOX", message(n, body=body), AppendSpec(flags[n % 5], DATE + n, 60))
    return int((await s.select(user, "INBOX")).mailbox.mailbox_id)


async def case_fetch(p: Probe, b: Backend) -> None:
    user = b.user()
    box = await _filled(p, user)
    await p.fetch("meta all", user, box, FetchRequest("1:*"))
    await p.fetch("headers", user, box, FetchRequest("2,4", with_header=True))
    await p.fetch("bodies", user, box, FetchRequest("3:1", with_body=True))
    await p.fetch("facts", user, box, FetchRequest("5", with_facts=True))
    await p.fetch("star", user, box, FetchRequest("*", with_header=True, with_body=True))
    await p.fetch("beyond", user, box, FetchRequest("7:9"))
    await p.fetch("star beyond", user, box, FetchRequest("9:*"))
    await p.fetch("changed since", user, box, FetchRequest("1:*", changed_since=3))
    await p.fetch("bad set", user, box, FetchRequest("x:y"))
    await p.fetch("zero", user, box, FetchRequest("0"))
    await p.fetch("empty set", user, box, FetchRequest(""))
    await p.fetch("unknown box", user, 999_999, FetchRequest("1"))
    await p.fetch("unknown user", f"{user}x", box, FetchRequest("1"))


async def case_store_flags(p: Probe, b: Backend) -> None:
    user = b.user()
    box = await _filled(p, user)
    s = p.store
    await p("add", s.store_flags(user, box, "1:3", FlagMode.ADD, ["\\Answered", "$Done"]))
    await p("add no-op", s.store_flags(user, box, "1", FlagMode.ADD, ["\\Seen"]))
    await p("remove", s.store_flags(user, box, "2:*", FlagMode.REMOVE, ["\\Deleted", "$Done"]))
    await p("replace", s.store_flags(user, box, "4", FlagMode.REPLACE, ["\\Draft", "Keyword"]))
    await p("replace empty", s.store_flags(user, box, "5", FlagMode.REPLACE, []))
    await p("unchanged since old", s.store_flags(user, box, "1:5", FlagMode.ADD, ["$X"], unchanged_since=6))
    status = await s.status(user, "INBOX")
    top = status.status.highestmodseq if status.status else 0
    await p("unchanged since now", s.store_flags(user, box, "1,3", FlagMode.ADD, ["$Y"], unchanged_since=top))
    await p("unchanged since 0", s.store_flags(user, box, "1", FlagMode.ADD, ["$Z"], unchanged_since=0))
    await p("beyond", s.store_flags(user, box, "10:20", FlagMode.ADD, ["$W"]))
    await p("bad set", s.store_flags(user, box, "1:x", FlagMode.ADD, ["$W"]))
    await p("unknown box", s.store_flags(user, 999_999, "1", FlagMode.ADD, ["$W"]))
    await p("select", s.select(user, "INBOX"))
    await p.fetch("after", user, box, FetchRequest("1:*"))


async def case_copy_move(p: Probe, b: Backend) -> None:
    user = b.user()
    box = await _filled(p, user)
    s = p.store
    await p("copy", s.copy(user, box, "2:4", "Archive"))
    await p("copy again", s.copy(user, box, "1,5", "Archive"))
    await p("move", s.move(user, box, "1:2", "Trash"))
    await p("move none", s.move(user, box, "50:60", "Trash"))
    await p("copy unknown dest", s.copy(user, box, "3", "Nope"))
    await p("move unknown dest", s.move(user, box, "3", "Nope"))
    await p("copy bad set", s.copy(user, box, "a", "Trash"))
    await p("copy to self", s.copy(user, box, "3", "INBOX"))
    await p("select", s.select(user, "INBOX"))
    archive = await p("archive", s.select(user, "Archive"))
    await p.fetch("archive facts", user, archive.mailbox.mailbox_id, FetchRequest("1:*", with_facts=True))
    await p.fetch("inbox facts", user, box, FetchRequest("1:*", with_facts=True))
    await p("vanished", s.vanished(user, box, 0))


async def case_expunge(p: Probe, b: Backend) -> None:
    user = b.user()
    box = await _filled(p, user, 10)
    s = p.store
    before = await s.status(user, "INBOX")
    mark = before.status.highestmodseq if before.status else 0
    await p("uid expunge", s.expunge(user, box, "1:4"))
    await p("uid expunge none", s.expunge(user, box, "1:3"))
    await p("expunge", s.expunge(user, box))
    await p("again", s.expunge(user, box))
    await p("bad set", s.expunge(user, box, "z"))
    await p("vanished all", s.vanished(user, box, 0))
    await p("vanished since", s.vanished(user, box, mark + 1))
    await p("vanished in set", s.vanished(user, box, 0, "5:*"))
    await p("vanished bad set", s.vanished(user, box, 0, "q"))
    await p("vanished unknown", s.vanished(user, 999_999, 0))
    await p("expunge unknown", s.expunge(user, 999_999))
    await p("select", s.select(user, "INBOX"))


async def case_scan_index(p: Probe, b: Backend) -> None:
    user = b.user()
    box = await _filled(p, user)
    await p.scan("plain", user, box, IndexQuery("1:*"))
    await p.scan("sizes", user, box, IndexQuery("2:4", with_sizes_dates=True))
    await p.scan("headers", user, box, IndexQuery("1:*", header_queries=((0, b"note 2"), (0, b"NOTE"), (1, b"ann"))))
    await p.scan(
        "text", user, box, IndexQuery("1:*", text_queries=(("quick brown", True), ("note 3", False), ("note 3", True)))
    )
    await p.scan("sort keys", user, box, IndexQuery("1,3,5", with_sort_keys=True))
    await p.scan("unseen", user, box, IndexQuery("1:*", without_flags=("\\Seen",), with_modseqs=False))
    await p.scan("unseen with modseqs", user, box, IndexQuery("1:*", without_flags=("\\seen",)))
    await p.scan("deleted flag sets", user, box, IndexQuery("2:*", with_flags=("\\Deleted",), with_modseqs=False))
    await p.scan("flags none", user, box, IndexQuery("1:*", with_flags=("\\Seen", "$x"), with_modseqs=False))
    await p.scan("empty", user, box, IndexQuery("40:50"))
    await p.scan("bad set", user, box, IndexQuery("*:x"))
    await p.scan("unknown box", user, 999_999, IndexQuery("1:*"))


async def case_bad_input(p: Probe, b: Backend) -> None:
    """Names, flags and bounds the store refuses, with the error kind it gives."""
    user = b.user()
    s = p.store
    for name in ("/lead", "a/*", "50%", "tab\there", "x" * 256, "é" * 120):
        await p(f"create {name[:12]!r}", s.create_mailbox(user, name))
    await p("create special unknown", s.create_mailbox(user, "Odd", "\\Bogus"))
    await p("create special lower", s.create_mailbox(user, "Odd2", "\\sent"))
    await p("rename to wildcard", s.rename_mailbox(user, "Archive", "Arch*"))
    await p("subscribe wildcard", s.subscribe(user, "a%", True))
    box = await _filled(p, user, 2)
    await p("flag recent", s.store_flags(user, box, "1", FlagMode.ADD, ["\\Recent"]))
    await p("flag unknown system", s.store_flags(user, box, "1", FlagMode.ADD, ["\\Bogus"]))
    await p("flag lower system", s.store_flags(user, box, "1", FlagMode.ADD, ["\\flagged"]))
    await p("keyword bad char", s.store_flags(user, box, "1", FlagMode.ADD, ["a(b"]))
    await p("keyword too long", s.store_flags(user, box, "1", FlagMode.ADD, ["k" * 129]))
    await p("keyword longest", s.store_flags(user, box, "1", FlagMode.ADD, ["k" * 128]))
    await p("keywords to the bound", s.store_flags(user, box, "2", FlagMode.ADD, [f"kw{n}" for n in range(126)]))
    await p("one keyword too many", s.store_flags(user, box, "1", FlagMode.ADD, ["extra"]))
    await p("append too many", append(s, user, "INBOX", message(9), AppendSpec(("extra2",), DATE)))
    await p("append bad flag", append(s, user, "INBOX", message(9), AppendSpec(("\\Recent",), DATE)))
    await p("copy to noselect-free", s.copy(user, box, "1", "inbox"))
    await p("select", s.select(user, "INBOX"))
    await p("unknown user create", s.create_mailbox(f"{user}x", "A"))
    await p("unknown user append", append(s, f"{user}x", "INBOX", message(1), AppendSpec()))


async def case_fenced(p: Probe, b: Backend) -> None:
    """A client of an older epoch: every write is FENCED and changes nothing, reads still answer."""
    user = b.user()
    box = await _filled(p, user, 2)
    stale = b.stale_client()
    try:
        await p("create", stale.create_mailbox(user, "New"))
        await p("rename", stale.rename_mailbox(user, "Sent", "Sent2"))
        await p("delete", stale.delete_mailbox(user, "Junk"))
        await p("subscribe", stale.subscribe(user, "Junk", False))
        await p("append", append(stale, user, "INBOX", message(5), AppendSpec((), DATE)))
        await p("multi", stale.multi_append(user, "INBOX", [(AppendSpec(), message(6))]))
        await p("store", stale.store_flags(user, box, "1", FlagMode.ADD, ["\\Seen"]))
        await p("copy", stale.copy(user, box, "1", "Trash"))
        await p("move", stale.move(user, box, "1", "Trash"))
        await p("expunge", stale.expunge(user, box))
        await p("claim", stale.claim_recent(user, box, 3))
        await p("set metadata", stale.set_metadata(user, "", [("/private/x", b"1")]))
        await p("status", stale.status(user, "INBOX"))
        await p("list", stale.list_mailboxes(user))
        await p.fetch("fetch", user, box, FetchRequest("1:*"))
    finally:
        if stale is not p.store:
            await stale.aclose()


async def case_user_names(p: Probe, b: Backend) -> None:
    """Calls for a user that does not exist, or whose name the store cannot hold."""
    for user in ("nobody-here", "Bad Name", ""):
        await p(f"list {user!r}", p.store.list_mailboxes(user))
        await p(f"status {user!r}", p.store.status(user, "INBOX"))
        await p(f"select {user!r}", p.store.select(user, "INBOX"))
        await p(f"quota {user!r}", p.store.get_quota(user))
        await p(f"metadata {user!r}", p.store.get_metadata(user, "", ["/private/x"], 0))
        await p(f"login {user!r}", p.store.authenticate(user, PASSWORD))


async def case_bounds_and_recent(p: Probe, b: Backend) -> None:
    """METADATA's bounds per request and per user, \\Recent after COPY and EXPUNGE, set order."""
    user = b.user()
    s = p.store
    many = [(f"/private/n{n}", b"v") for n in range(501)]
    await p("set 501 in one request", s.set_metadata(user, "", many))
    await p("set 500", s.set_metadata(user, "", many[:500]))
    await p("set one more", s.set_metadata(user, "INBOX", [("/private/extra", b"v")]))
    await p("replace one", s.set_metadata(user, "", [("/private/n1", b"w")]))
    await p("get 501 names", s.get_metadata(user, "", [name for name, _ in many], 0))
    await p("get depth", s.get_metadata(user, "", ["/private/n49"], 2))
    box = await _filled(p, user, 4)
    await p("status", s.status(user, "INBOX"))
    await p("claim 2", s.claim_recent(user, box, 3))
    await p("copy", s.copy(user, box, "1:2", "Trash"))
    await p("trash", s.select(user, "Trash"))
    await p("trash status", s.status(user, "Trash"))
    await p("expunge", s.expunge(user, box))
    await p("after expunge", s.status(user, "INBOX"))
    await p("select", s.select(user, "INBOX"))
    await p.fetch("out of order set", user, box, FetchRequest("4,1,2:1,3", with_header=True))
    await p("flags twice", s.store_flags(user, box, "1,1:2", FlagMode.ADD, ["$a", "$a", "\\flagged"]))


async def case_metadata(p: Probe, b: Backend) -> None:
    user = b.user()
    s = p.store
    await p("set", s.set_metadata(user, "", [("/private/comment", b"hello"), ("/shared/Vendor/a/b", b"deep")]))
    await p("set mailbox", s.set_metadata(user, "INBOX", [("/private/comment", b"inbox note")]))
    await p("get", s.get_metadata(user, "", ["/private/comment", "/PRIVATE/COMMENT"], 0))
    await p("get depth 1", s.get_metadata(user, "", ["/shared/vendor"], 1))
    await p("get depth inf", s.get_metadata(user, "", ["/shared"], 2))
    await p("get mailbox", s.get_metadata(user, "INBOX", ["/private/comment", "/private/missing"], 0))
    await p("remove", s.set_metadata(user, "", [("/private/comment", None)]))
    await p("after remove", s.get_metadata(user, "", ["/private"], 2))
    await p("too big", s.set_metadata(user, "", [("/private/big", b"x" * (64 * 1024 + 1))]))
    await p("bad name", s.set_metadata(user, "", [("/public/x", b"1")]))
    await p("bad lookup", s.get_metadata(user, "", ["noslash"], 0))
    await p("unknown mailbox", s.get_metadata(user, "Nope", ["/private/comment"], 0))
    await p("set unknown mailbox", s.set_metadata(user, "Nope", [("/private/comment", b"1")]))


async def watched(
    s: StoreClient, user: str, box: int, mark: int, action: Callable[[], Awaitable[object]], *, count: int
) -> list[ChangeEvent]:
    """The events a watch from `mark` sees: first the catch-up (which says the feed is open, so
    no sleep is needed before `action`), then up to `count` events that `action` causes."""
    events: list[ChangeEvent] = []
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            opened = trio.Event()

            async def collect() -> None:
                async for event in s.watch(user, box, mark):
                    if event.heartbeat:
                        continue
                    events.append(event)
                    opened.set()
                    if event.deleted or event.renamed or len(events) > count:
                        break
                nursery.cancel_scope.cancel()

            nursery.start_soon(collect)
            await opened.wait()
            await action()
            await trio.sleep(15)  # collect() cancels this once the events are in
    return events


async def case_watch(p: Probe, b: Backend) -> None:
    """A change made by another caller reaches a watch: order and content."""
    user = b.user()
    s = p.store
    other = b.fake or GrpcStore(b.server.address, b.epoch)  # another imapd of the same store
    box = (await s.select(user, "INBOX")).mailbox.mailbox_id
    await append(s, user, "INBOX", message(0), AppendSpec((), DATE))

    async def changes() -> None:
        await append(other, user, "INBOX", message(1), AppendSpec(("\\Seen",), DATE))
        await other.store_flags(user, box, "1", FlagMode.ADD, ["\\Deleted"])
        await other.expunge(user, box)
        await other.multi_append(user, "INBOX", [(AppendSpec((), DATE), message(n)) for n in (2, 3)])

    try:
        p.note("events", await watched(s, user, box, 2, changes, count=4))
    finally:
        if other is not s:
            await other.aclose()
    replay: list[ChangeEvent] = []
    with trio.fail_after(10):
        async for event in s.watch(user, box, 3):  # the catch-up comes first, at once
            if not event.heartbeat:
                replay.append(event)
                break
    p.note("since modseq 3", replay)
    await p("create to delete", s.create_mailbox(user, "Gone"))
    gone = (await s.select(user, "Gone")).mailbox.mailbox_id
    p.note("deleted", await watched(s, user, gone, 1, lambda: s.delete_mailbox(user, "Gone"), count=1))
    mark = (await s.select(user, "INBOX")).mailbox.status
    assert mark is not None
    rename = lambda: s.rename_mailbox(user, "INBOX", "Moved")  # noqa: E731 (RFC 3501 6.3.5: the messages leave INBOX)
    p.note("rename inbox", await watched(s, user, box, mark.highestmodseq, rename, count=1))


class _OwnWrites:
    """An `OwnWrites` listener that keeps what it is told."""

    def __init__(self) -> None:
        self.events: list[ChangeEvent] = []
        self.in_flight: set[int] = set()
        self.tickets = itertools.count(1)

    def write_started(self, user: str) -> int:
        ticket = next(self.tickets)
        self.in_flight.add(ticket)
        return ticket

    def write_ended(self, ticket: int, events: Sequence[ChangeEvent], *, certain: bool) -> None:
        assert certain and ticket in self.in_flight
        self.in_flight.discard(ticket)
        self.events.extend(events)


async def case_own_writes(p: Probe, b: Backend) -> None:
    """With a listener, each of the client's own writes' changes comes once: from the write's
    reply (the real store) or on the watch (allowed: the fake); the same changes either way."""
    user = b.user()
    s = p.store
    box = (await s.select(user, "INBOX")).mailbox.mailbox_id
    await append(s, user, "INBOX", message(0), AppendSpec((), DATE))
    mark = (await s.select(user, "INBOX")).mailbox.status
    assert mark is not None
    own = _OwnWrites()
    s.report_own_writes(own)
    seen: list[ChangeEvent] = []
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            opened = trio.Event()

            async def collect() -> None:
                async for event in s.watch(user, box, mark.highestmodseq):
                    if not event.heartbeat:
                        seen.append(event)
                        opened.set()

            nursery.start_soon(collect)
            await opened.wait()  # the catch-up: the feed is open
            await append(s, user, "INBOX", message(1), AppendSpec(("\\Seen",), DATE))
            await s.store_flags(user, box, "1:2", FlagMode.ADD, ["\\Deleted"])
            await s.expunge(user, box)
            await s.claim_recent(user, box, 100)  # no change of the feed's
            while len(seen) + len(own.events) < 4:
                await trio.sleep(0.01)
            await trio.sleep(0.3)  # nothing more (no echo) comes
            nursery.cancel_scope.cancel()
    assert not own.in_flight
    changes = sorted((*seen[1:], *own.events), key=lambda e: e.modseq)
    p.note("catch-up", seen[:1])
    p.note("changes", [dataclasses.replace(e, after_modseq=0) for e in changes])
    # An event from a reply says where it starts: one modseq per change here.
    assert [e.modseq - e.after_modseq for e in own.events] == [1] * len(own.events)


async def case_watch_account(p: Probe, b: Backend) -> None:
    """The account feed (NOTIFY): mailbox events and create/delete/rename/subscription, in order."""
    user = b.user()
    s = p.store
    other = b.fake or GrpcStore(b.server.address, b.epoch)
    events: list[ChangeEvent] = []
    try:
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:

                async def collect() -> None:
                    async for event in s.watch_account(user):
                        if not event.heartbeat:
                            events.append(event)

                nursery.start_soon(collect)
                for _ in range(100):  # the feed starts "from now": write until it has seen a write
                    await other.subscribe(user, "Ready", True)
                    with trio.move_on_after(0.1):
                        while not events:
                            await trio.sleep(0.01)
                    if events:
                        break
                await trio.sleep(0.3)
                events.clear()
                await other.create_mailbox(user, "A/B")
                await append(other, user, "INBOX", message(1), AppendSpec((), DATE))
                box = (await other.select(user, "INBOX")).mailbox.mailbox_id
                await other.store_flags(user, box, "1", FlagMode.ADD, ["\\Seen"])
                await other.rename_mailbox(user, "A", "C")
                await other.delete_mailbox(user, "C/B")
                await other.subscribe(user, "C", True)
                await other.subscribe(user, "C", False)
                await other.rename_mailbox(user, "INBOX", "Old")
                while not any(e.expunged for e in events):  # RENAME INBOX's expunge is the last event
                    await trio.sleep(0.05)
                await trio.sleep(0.2)  # and anything a backend would send after it
                nursery.cancel_scope.cancel()
    finally:
        if other is not s:
            await other.aclose()
    p.note("account events", events)


CASES: dict[str, Case] = {
    name.removeprefix("case_"): fn for name, fn in dict(globals()).items() if name.startswith("case_")
}
_reference: dict[str, list[tuple[str, object]]] = {}


def _run(kind: str, server: StoreServer, case: Case) -> list[tuple[str, object]]:
    backend = Backend(kind, server)

    async def main() -> list[tuple[str, object]]:
        store = backend.client()
        try:
            probe = Probe(store)
            await case(probe, backend)
            return probe.record
        finally:
            await store.aclose()

    return trio.run(main)


def reference(name: str, server: StoreServer) -> list[tuple[str, object]]:
    if name not in _reference:
        _reference[name] = _run("remote", server, CASES[name])
    return _reference[name]


@pytest.mark.parametrize("kind", ["fake", "local"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_answers_like_the_real_store(name: str, kind: str, real_store: StoreServer) -> None:
    expected = reference(name, real_store)
    got = _run(kind, real_store, CASES[name])
    assert [label for label, _ in got] == [label for label, _ in expected]
    for (label, answer), (_, want) in zip(got, expected, strict=True):
        assert answer == want, f"{kind}: {label}\n{kind}: {answer!r}\nstore: {want!r}"


def test_the_cases_reach_every_method() -> None:
    """Each method of the interface is called by some case (so a new method needs a case)."""
    source = pathlib.Path(__file__).read_text()
    wanted = {m for m in vars(StoreClient) if not m.startswith("_")}
    assert {m for m in wanted if f".{m}(" not in source} == set()
