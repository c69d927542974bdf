"""Helpers of the backup tests: messages with unique ids, and a store's mail read back as plain values."""

from __future__ import annotations

from dataclasses import dataclass

from mailha_api import store_pb2
from store.client import StoreClient


def message(tag: str, size: int = 300) -> bytes:
    head = f"From: a@example.org\r\nTo: b@example.org\r\nMessage-ID: <{tag}@test>\r\nSubject: {tag}\r\n\r\n".encode()
    line = b"0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz\r\n"
    body = (line * (size // len(line) + 1))[: max(0, size - len(head) - 2)]
    return head + body + b"\r\n"


@dataclass(frozen=True)
class Mail:
    uid: int
    flags: frozenset[str]
    internal_date: int
    data: bytes


def read_mailbox(client: StoreClient, user: str, name: str) -> tuple[int, list[Mail]]:
    """(UIDVALIDITY, messages in UID order) of one mailbox."""
    status = client.stub.Status(store_pb2.StatusRequest(user=user, name=name))
    mid = status.mailbox_id
    out = [
        Mail(meta.uid, frozenset(meta.flags), meta.internal_date, client.fetch_body(user, mid, meta.uid))
        for meta in client.fetch_meta(user, mid, "1:*")
    ]
    return status.status.uidvalidity, out


def mailbox_names(client: StoreClient, user: str) -> set[str]:
    reply = client.stub.ListMailboxes(store_pb2.ListMailboxesRequest(user=user))
    return {m.name for m in reply.mailboxes if not m.noselect}


def set_flags(client: StoreClient, user: str, name: str, uid_set: str, flags: list[str]) -> None:
    mid = client.mailbox_id(user, name)
    req = store_pb2.StoreFlagsRequest(
        epoch=client.epoch(), user=user, mailbox_id=mid, uid_set=uid_set, mode=store_pb2.FLAG_MODE_ADD, flags=flags
    )
    client.stub.StoreFlags(req)


def expunge(client: StoreClient, user: str, name: str, uid_set: str) -> None:
    set_flags(client, user, name, uid_set, ["\\Deleted"])
    mid = client.mailbox_id(user, name)
    client.stub.Expunge(store_pb2.ExpungeRequest(epoch=client.epoch(), user=user, mailbox_id=mid, uid_set=uid_set))
