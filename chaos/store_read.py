"""The final read through the store's gRPC API instead of IMAP.

Used when no IMAP front end serves (LMTP-only clusters) and as an
independent witness: it reads what the store holds, not what imapd shows.
Records the same FINAL_READ events as the IMAP final read.
"""

from __future__ import annotations

import re
import time

import grpc

from chaos.history import EventType, HistoryWriter, JsonValue, Op
from chaos.workload import trailer
from mailha_api import store_pb2, store_pb2_grpc
from store.channel import open_channel

_CHAOS_ID = re.compile(rb"^X-Chaos-Id:\s*(\S+)", re.IGNORECASE | re.MULTILINE)


def read_mailbox(
    stub: store_pb2_grpc.MailStoreStub, user: str, mailbox: str, run_id: str, *, bodies: bool = False
) -> dict[str, JsonValue]:
    """One mailbox as a FINAL_READ value; with `bodies`, each message's trailer is checked (`intact`)."""
    selected = stub.Select(store_pb2.SelectRequest(user=user, name=mailbox), timeout=30)
    info = selected.mailbox
    reply: dict[str, JsonValue] = {
        "mailbox": mailbox,
        "uidvalidity": int(info.status.uidvalidity),
        "uidnext": int(info.status.uidnext),
        "highestmodseq": int(info.status.highestmodseq),
    }
    messages: list[JsonValue] = []
    foreign = 0
    if selected.uids:
        request = store_pb2.FetchRequest(
            user=user, mailbox_id=info.mailbox_id, uid_set="1:*", with_header=True, with_body=bodies
        )
        current: dict[str, JsonValue] | None = None
        tail = b""
        for item in stub.Fetch(request, timeout=120):
            if item.HasField("chunk"):
                tail = (tail + item.chunk.data)[-256:]
                if item.chunk.last and current is not None:
                    cid = current["chaos_id"]
                    current["intact"] = isinstance(cid, str) and tail.endswith(trailer(cid))
                continue
            meta = item.meta
            m = _CHAOS_ID.search(meta.header)
            chaos_id = m.group(1).decode() if m else None
            tail = b""
            if chaos_id is not None and not chaos_id.startswith(run_id + "-"):
                foreign += 1  # another run's delivery to the same INBOX
                current = None
                continue
            current = {"uid": int(meta.uid), "chaos_id": chaos_id, "size": int(meta.size)}
            if bodies:
                current["intact"] = False  # until its last chunk shows the trailer
            messages.append(current)
    reply["messages"] = messages
    reply["foreign"] = foreign
    return reply


def final_read_store(
    address: str,
    *,
    user: str,
    run_id: str,
    history: HistoryWriter,
    mailboxes: tuple[str, ...],
    timeout: float,
    bodies: bool = False,
) -> bool:
    deadline = time.monotonic() + timeout
    done: set[str] = set()
    last = ""
    while time.monotonic() < deadline and len(done) < len(mailboxes):
        with open_channel(address) as channel:
            stub = store_pb2_grpc.MailStoreStub(channel)
            for mailbox in mailboxes:
                if mailbox in done:
                    continue
                op_id = history.invoke("final-store", Op.FINAL_READ, {"mailbox": mailbox})
                try:
                    reply = read_mailbox(stub, user, mailbox, run_id, bodies=bodies)
                except grpc.RpcError as exc:
                    last = f"{mailbox}: {exc.code().name} {exc.details()}"
                    history.complete("final-store", Op.FINAL_READ, op_id, EventType.UNKNOWN, {"error": last})
                    break
                history.complete("final-store", Op.FINAL_READ, op_id, EventType.OK, reply)
                done.add(mailbox)
        if len(done) < len(mailboxes):
            time.sleep(0.5)
    if len(done) < len(mailboxes):
        history.record("final-store", Op.FINAL_READ, {"error": f"gave up: {last}"}, EventType.FAIL)
        return False
    return True
