"""SELECT reads the UIDs and the keywords in use without decoding every message."""

from __future__ import annotations

from mailha_api import store_pb2
from store.bodies import BodySource
from store.engine import MailStore
from store.schema import MessageRecord

MSG = b"From: a@example.org\r\nSubject: hello\r\n\r\nbody text\r\n"


def _append(store: MailStore, flags: tuple[str, ...], mailbox: str = "INBOX") -> int:
    header = store_pb2.AppendHeader(epoch=1, user="alice", mailbox=mailbox, flags=list(flags), size=len(MSG))
    return store.append(header, BodySource(len(MSG), data=MSG)).uid


def test_select_lists_uids_and_keywords_of_this_mailbox_only(mail_store: MailStore) -> None:
    mail_store.create_user(store_pb2.CreateUserRequest(epoch=1, name="alice", password="pw"))
    assert list(mail_store.select("alice", "INBOX").uids) == []
    assert list(mail_store.select("alice", "INBOX").permanent_flags) == []
    _append(mail_store, ())
    _append(mail_store, ("\\Seen", "$Label1"))
    _append(mail_store, ("$Junk", "\\Flagged", "$Label1"))
    _append(mail_store, ("\\Deleted",))
    _append(mail_store, ("OtherBox",), mailbox="Archive")  # another mailbox's keyword stays out
    mid = mail_store.status("alice", "INBOX").mailbox_id
    mail_store.expunge(store_pb2.ExpungeRequest(epoch=1, user="alice", mailbox_id=mid))
    _append(mail_store, ("\\Answered",))
    reply = mail_store.select("alice", "INBOX")
    assert list(reply.uids) == [1, 2, 3, 5]
    assert list(reply.permanent_flags) == ["$Junk", "$Label1"]
    archive = mail_store.select("alice", "Archive")
    assert (list(archive.uids), list(archive.permanent_flags)) == ([1], ["OtherBox"])
    # A keyword removed from its last message is no longer listed.
    req = store_pb2.StoreFlagsRequest(
        epoch=1, user="alice", mailbox_id=mid, uid_set="1:*", mode=store_pb2.FLAG_MODE_REMOVE, flags=["$Junk"]
    )
    mail_store.store_flags(req)
    assert list(mail_store.select("alice", "INBOX").permanent_flags) == ["$Label1"]


def test_message_record_round_trips_and_compares_like_a_constructed_one() -> None:
    for flags in ((), ("\\Seen",), ("$Label1", "\\Deleted", "\\Flagged")):
        rec = MessageRecord(7, 3, -5, -330, 4096, 2**40, flags)
        back = MessageRecord.unpack(memoryview(rec.pack()))
        assert back == rec and hash(back) == hash(rec) and repr(back) == repr(rec)
        assert back.deleted == ("\\Deleted" in flags) and back.seen == ("\\Seen" in flags)
        assert back.evolve(flags=("\\Seen",)) == MessageRecord(7, 3, -5, -330, 4096, 2**40, ("\\Seen",))
