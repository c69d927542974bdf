"""The LMDB key layout and record encodings (documented in store/README.md).

All integers in keys are big-endian so LMDB's byte order is numeric order.
Records are fixed struct headers followed by variable strings, because the
hot path (append, flag update) decodes and re-encodes them per message.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import lmdb

# The data format, kept under b"format" in the meta database. 2: VANISHED tombstones
# hold runs of UIDs (store/tombstones.py) and a copy's extra body references live in
# `body_refs`; code of format 1 would report one UID per run and free bodies that
# still have copies, so a store or reader refuses data newer than it understands.
FORMAT_VERSION = 2
FORMAT_KEY = b"format"

CHUNK_SIZE = 256 * 1024

# Named databases.
DB_NAMES = (
    "meta",  # b"epoch" | b"next_uidvalidity" | b"next_mailbox_id" | b"next_body_id" | b"format" -> u64
    "users",  # user -> password hash string
    "quota",  # user -> limit u64, usage u64, messages u64
    "addresses",  # address -> user
    "user_addresses",  # user \0 address -> b""
    "mailbox_names",  # user \0 name -> mailbox_id u64
    "mailboxes",  # mailbox_id u64 -> MailboxRecord
    "messages",  # mailbox_id u64, uid u32 -> MessageRecord
    "vanished",  # mailbox_id u64, modseq u64, uid u32 -> b"" or last uid u32 (store/tombstones.py)
    "body_meta",  # body_id u64 -> refcount u32, size u64, header block
    "body_chunks",  # body_id u64, chunk_no u32 -> up to CHUNK_SIZE bytes
    "deleted",  # mailbox_id u64, uid u32 -> b"" for every message flagged \\Deleted (what EXPUNGE reads)
    "user_settings",  # user -> settings_pb2.UserSettings (store/user_settings.py)
    "delivery_log",  # seq u64 -> settings_pb2.DeliveryRecord, bounded (store/user_settings.py)
    "flag_index",  # mailbox_id u64, uid >> 6 u32 -> flag-index segment (store/flag_index.py)
    "header_index",  # mailbox_id u64, uid >> 4 u32 -> header-index segment (store/header_index.py)
    "flag_members",  # mailbox_id u64, flag-set id u32, uid >> 8 u32 -> UIDs (store/flag_members.py)
    "flagsets",  # id u32 -> flag list (store/flag_sets.py)
    "flagset_ids",  # b"f" + flag list -> id u32
    "message_facts",  # body_id u64 -> stored sort keys and preview (store/message_facts.py)
    "save_dates",  # mailbox_id u64, uid u32 -> unix seconds i64 (store/save_dates.py)
    "metadata",  # user \0 mailbox_id u64 entry -> entry \0 value (store/metadata.py)
    "body_refs",  # body_id u64 -> u32 references beyond body_meta's count (store/bodies.py)
)

# Every process that opens the environment (store, local reader, compaction, full-text
# rebuild, backup) allows this many named databases: room beyond DB_NAMES and the
# delivery-dedupe tables for what later versions add.
MAX_DBS = 64

U32 = struct.Struct(">I")
U64 = struct.Struct(">Q")


class FormatTooNew(Exception):
    """The data directory was written by a newer mailha than this one."""


def check_format(stored: bytes | None, where: str) -> None:
    """Refuse data of a format this code does not know (None: a new environment)."""
    if stored is not None and U64.unpack(stored)[0] > FORMAT_VERSION:
        raise FormatTooNew(
            f"{where} holds data format {U64.unpack(stored)[0]}, newer than this mailha's "
            f"{FORMAT_VERSION}: run the mailha version that wrote it (a downgrade would misread it)"
        )


MSG_KEY = struct.Struct(">QI")
VANISHED_KEY = struct.Struct(">QQI")
CHUNK_KEY = struct.Struct(">QI")
QUOTA = struct.Struct(">QQQ")
BODY_META = struct.Struct(">IQ")


class Dbs:
    """Handles of the named databases of one environment.

    Writers open them with store.environment.open_dbs (creating what is missing
    and building the indexes an older environment lacks); readers beside the
    store with Dbs.read_only.
    """

    def __init__(self, handles: dict[str, lmdb._Database]) -> None:
        self._assign(handles)

    @classmethod
    def read_only(cls, env: lmdb.Environment) -> Dbs:
        """A reader beside the store (`store.reader`): the store created everything already."""
        return cls({name: env.open_db(name.encode(), create=False) for name in DB_NAMES})

    def rebind(self, handles: dict[str, lmdb._Database]) -> None:
        """Take the handles of a reopened environment (store.environment.rebind_dbs)."""
        self._assign(handles)

    def _assign(self, handles: dict[str, lmdb._Database]) -> None:
        self.meta = handles["meta"]
        self.users = handles["users"]
        self.quota = handles["quota"]
        self.addresses = handles["addresses"]
        self.user_addresses = handles["user_addresses"]
        self.mailbox_names = handles["mailbox_names"]
        self.mailboxes = handles["mailboxes"]
        self.messages = handles["messages"]
        self.vanished = handles["vanished"]
        self.body_meta = handles["body_meta"]
        self.body_chunks = handles["body_chunks"]
        self.deleted = handles["deleted"]
        self.user_settings = handles["user_settings"]
        self.delivery_log = handles["delivery_log"]
        self.flag_index = handles["flag_index"]
        self.header_index = handles["header_index"]
        self.flag_members = handles["flag_members"]
        self.flagsets = handles["flagsets"]
        self.flagset_ids = handles["flagset_ids"]
        self.message_facts = handles["message_facts"]
        self.save_dates = handles["save_dates"]
        self.metadata = handles["metadata"]
        self.body_refs = handles["body_refs"]


def build_deleted_index(txn: lmdb.Transaction, messages: lmdb._Database, deleted: lmdb._Database) -> int:
    """Fill the `deleted` index from the messages (in the caller's transaction); return its size."""
    count = 0
    for key, value in txn.cursor(db=messages):
        if MessageRecord.unpack(value).deleted:
            txn.put(bytes(key), b"", db=deleted)
            count += 1
    return count


def u64(value: int) -> bytes:
    return U64.pack(value)


def user_key(user: str, rest: str = "") -> bytes:
    return user.encode() + b"\0" + rest.encode("utf-8")


def user_prefix(user: str) -> bytes:
    return user.encode() + b"\0"


def msg_key(mailbox_id: int, uid: int) -> bytes:
    return MSG_KEY.pack(mailbox_id, uid)


@dataclass(frozen=True)
class QuotaRecord:
    limit: int
    usage: int
    messages: int

    def pack(self) -> bytes:
        return QUOTA.pack(self.limit, self.usage, self.messages)

    @classmethod
    def unpack(cls, raw: bytes | memoryview) -> QuotaRecord:
        return cls(*QUOTA.unpack(raw))


_MAILBOX = struct.Struct(">IIQIIIQB")
_new_object = object.__new__
SUBSCRIBED = 1
NOSELECT = 2


@dataclass(frozen=True)
class MailboxRecord:
    user: str
    name: str
    uidvalidity: int
    uidnext: int
    highestmodseq: int
    messages: int = 0
    unseen: int = 0
    deleted: int = 0
    size: int = 0
    special_use: str = ""
    subscribed: bool = True
    noselect: bool = False

    def pack(self) -> bytes:
        bits = (SUBSCRIBED if self.subscribed else 0) | (NOSELECT if self.noselect else 0)
        head = _MAILBOX.pack(
            self.uidvalidity,
            self.uidnext,
            self.highestmodseq,
            self.messages,
            self.unseen,
            self.deleted,
            self.size,
            bits,
        )
        return head + "\0".join((self.user, self.name, self.special_use)).encode("utf-8")

    @classmethod
    def unpack(cls, raw: bytes | memoryview) -> MailboxRecord:
        uv, nxt, hms, msgs, unseen, deleted, size, bits = _MAILBOX.unpack_from(raw)
        user, name, special = bytes(raw[_MAILBOX.size :]).decode("utf-8").split("\0")
        # Every local read (SELECT, STATUS, FETCH, STORE) and every write decodes its mailbox:
        # filling __dict__ directly, as MessageRecord.unpack does, costs a third of the frozen
        # dataclass __init__ (one object.__setattr__ per field).
        rec = _new_object(cls)
        rec.__dict__.update(
            user=user,
            name=name,
            uidvalidity=uv,
            uidnext=nxt,
            highestmodseq=hms,
            messages=msgs,
            unseen=unseen,
            deleted=deleted,
            size=size,
            special_use=special,
            subscribed=bool(bits & SUBSCRIBED),
            noselect=bool(bits & NOSELECT),
        )
        return rec

    @staticmethod
    def selectable_modseq(raw: bytes | memoryview, user: str) -> int | None:
        """HIGHESTMODSEQ of a packed record that is `user`'s and selectable, its names not
        decoded (the no-op STORE check); None otherwise (decode it then, for the error)."""
        head = _MAILBOX.unpack_from(raw)
        owner = user.encode("utf-8") + b"\0"
        if head[7] & NOSELECT or raw[_MAILBOX.size : _MAILBOX.size + len(owner)] != owner:
            return None
        return int(head[2])

    def evolve(self, **changes: object) -> MailboxRecord:
        # Not dataclasses.replace: this is on the append path and replace() is several times slower.
        fields = dict(self.__dict__)
        fields.update(changes)
        return MailboxRecord(**fields)


_MESSAGE = struct.Struct(">QQqhQQ")
MESSAGE_FLAGS_OFFSET = _MESSAGE.size  # the flags (space-separated ASCII) follow the fixed header
_BODY_ID_OFFSET = _MESSAGE.size - 8
# size u64 and body_id u64, the last two fields of the fixed header: what EXPUNGE needs of a
# record besides its flags, read with one unpack_from at this offset (no record decoded).
SIZE_AND_BODY = struct.Struct(">QQ")
SIZE_AND_BODY_OFFSET = _MESSAGE.size - SIZE_AND_BODY.size


def record_flags(raw: bytes | memoryview) -> tuple[str, ...]:
    """The flags of a packed MessageRecord (as `MessageRecord.unpack` gives them), the rest not decoded."""
    tail = bytes(raw[MESSAGE_FLAGS_OFFSET:])
    return tuple(tail.decode("ascii").split(" ")) if tail else ()


def message_body_id(raw: bytes | memoryview) -> int:
    """The body_id of a packed MessageRecord, without decoding the rest."""
    return int(U64.unpack_from(raw, _BODY_ID_OFFSET)[0])


@dataclass(frozen=True)
class MessageRecord:
    modseq: int  # of the last change (append or flags)
    added_modseq: int  # of the append: tells new messages from re-flagged ones when catching up
    internal_date: int
    tz_offset_minutes: int
    size: int
    body_id: int
    flags: tuple[str, ...]

    def pack(self) -> bytes:
        head = _MESSAGE.pack(
            self.modseq, self.added_modseq, self.internal_date, self.tz_offset_minutes, self.size, self.body_id
        )
        return head + " ".join(self.flags).encode("ascii")

    @classmethod
    def unpack(cls, raw: bytes | memoryview) -> MessageRecord:
        modseq, added, date, tz, size, body_id = _MESSAGE.unpack_from(raw)
        tail = bytes(raw[_MESSAGE.size :])
        # Every FETCH, STORE and EXPUNGE decodes records in a loop: filling __dict__ directly
        # halves the cost of the frozen dataclass __init__ (one object.__setattr__ per field).
        rec = _new_object(cls)
        rec.__dict__.update(
            modseq=modseq,
            added_modseq=added,
            internal_date=date,
            tz_offset_minutes=tz,
            size=size,
            body_id=body_id,
            flags=tuple(tail.decode("ascii").split(" ")) if tail else (),
        )
        return rec

    def evolve(self, **changes: object) -> MessageRecord:
        # As in unpack: COPY and STORE evolve a record per message, and the frozen dataclass
        # __init__ (one object.__setattr__ per field) was most of it. Names are checked.
        if not changes.keys() <= self.__dict__.keys():
            raise TypeError(f"MessageRecord has no field {sorted(changes.keys() - self.__dict__.keys())}")
        rec = _new_object(MessageRecord)
        rec.__dict__.update(self.__dict__, **changes)
        return rec

    @property
    def seen(self) -> bool:
        return "\\Seen" in self.flags

    @property
    def deleted(self) -> bool:
        return "\\Deleted" in self.flags
