"""The delivery log: every LMTP delivery's outcome per recipient, bounded, searchable.

LMDB operations only, in the caller's write transaction. Keyed by a big-endian
sequence number and holds at most `LOG_LIMIT` records (the oldest go first, in
batches: `TRIM_BATCH`). A
delivery that stores a message is logged by the append itself
(AppendHeader.delivery_log, `record_append`): the same transaction holds the
message and its log line, so a crash keeps both or neither. Outcomes that store
nothing (refused, discarded, forwarded only, failed) come through
RecordDeliveries.
"""

from __future__ import annotations

import lmdb

from mailha_api import settings_pb2, store_pb2
from store.ordered_put import put_in_order
from store.schema import U64, Dbs

LOG_LIMIT = 20_000
# Once the log is over its limit, the oldest records go in a batch that leaves it this many
# below the limit (a limit this small or smaller is trimmed to the limit exactly): trimming
# one record per delivery rewrote the leftmost leaf and its branch pages in every append's
# commit (3 of the ~40 pages an append dirtied past 20,000 deliveries, store/README.md).
TRIM_BATCH = 256
SEARCH_LIMIT = 100
# Records are appended in time order (give or take lmtpd clocks a little apart): a search with a
# lower time bound stops this far past it instead of reading the whole log.
CLOCK_SLACK_MS = 60_000
# What one record may carry (lmtpd's own values are far shorter): the log's size stays bounded.
MAX_FIELD = 998


def record_append(txn: lmdb.Transaction, dbs: Dbs, header: store_pb2.AppendHeader) -> None:
    """Log the delivery an append carries (call after the append, in its transaction)."""
    if header.HasField("delivery_log"):
        entry = settings_pb2.DeliveryRecord()
        entry.CopyFrom(header.delivery_log)
        record(txn, dbs, [entry])


def record(txn: lmdb.Transaction, dbs: Dbs, records: list[settings_pb2.DeliveryRecord], limit: int = LOG_LIMIT) -> int:
    """Append records (assigning seq); past `limit`, trim the oldest (to `limit` - TRIM_BATCH
    when the limit is larger than 4 * TRIM_BATCH, else to `limit`); return how many it holds."""
    cur = txn.cursor(db=dbs.delivery_log)
    seq = U64.unpack(bytes(cur.key()))[0] if cur.last() else 0
    for entry in records:
        seq += 1
        entry.seq = seq
        for name in ("sender", "recipient", "user", "message_id", "result", "folder"):
            setattr(entry, name, getattr(entry, name)[:MAX_FIELD])
        put_in_order(txn, U64.pack(seq), entry.SerializeToString(), dbs.delivery_log)  # seq: the highest
    kept = int(txn.stat(dbs.delivery_log)["entries"])
    if kept > limit:
        keep = limit - TRIM_BATCH if limit > 4 * TRIM_BATCH else limit
        cur = txn.cursor(db=dbs.delivery_log)
        cur.first()
        for _ in range(kept - keep):
            cur.delete()
        kept = keep
    return kept


def matches(entry: settings_pb2.DeliveryRecord, query: settings_pb2.SearchDeliveriesRequest) -> bool:
    if query.user and entry.user != query.user:
        return False
    if query.address:
        needle = query.address.lower()
        if needle not in entry.sender.lower() and needle not in entry.recipient.lower():
            return False
    if query.message_id and query.message_id.lower() not in entry.message_id.lower():
        return False
    if query.since_ms and entry.time_ms < query.since_ms:
        return False
    return not (query.until_ms and entry.time_ms > query.until_ms)


def search(
    txn: lmdb.Transaction, dbs: Dbs, query: settings_pb2.SearchDeliveriesRequest
) -> list[settings_pb2.DeliveryRecord]:
    """Newest first, at most query.limit (default SEARCH_LIMIT) records."""
    limit = query.limit or SEARCH_LIMIT
    out: list[settings_pb2.DeliveryRecord] = []
    cur = txn.cursor(db=dbs.delivery_log)
    if not cur.last():
        return out
    for value in cur.iterprev(keys=False, values=True):
        entry = settings_pb2.DeliveryRecord.FromString(bytes(value))
        if query.since_ms and entry.time_ms < query.since_ms - CLOCK_SLACK_MS:
            break  # records are appended in time order: nothing older can match
        if matches(entry, query):
            out.append(entry)
            if len(out) >= limit:
                break
    return out
