"""MailStore: the mailbox store in one process.

Methods take and return the API's protobuf messages (the contract) and raise
StoreError subclasses; `store.servicer` maps those to gRPC statuses. The
pieces: `store.core` (environment, committer, plumbing), `store.account_ops`
(fencing, users, addresses, quotas, mailboxes), `store.message_ops`
(messages and the change feed), `store.index_ops` (queries answered from the
flag and header indexes).
"""

from __future__ import annotations

from store.account_ops import AccountOps
from store.core import StoreOptions
from store.index_ops import IndexOps
from store.message_ops import MessageOps

__all__ = ["MailStore", "StoreOptions"]


class MailStore(AccountOps, MessageOps, IndexOps):
    pass
