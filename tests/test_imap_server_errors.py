"""Store failures -> StoreError kinds (gRPC codes) -> IMAP responses, each in one place."""

from __future__ import annotations

import grpc
import pytest

from imapd.errors import StoreError, StoreErrorKind
from imapd.session.error_map import Context, reply_for
from imapd.store_grpc import store_error


class _Failed(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


@pytest.mark.parametrize(
    ("code", "details", "kind"),
    [
        (grpc.StatusCode.NOT_FOUND, "no mailbox Foo", StoreErrorKind.NOT_FOUND),
        (grpc.StatusCode.ALREADY_EXISTS, "mailbox exists", StoreErrorKind.ALREADY_EXISTS),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, "quota: 10 > 5", StoreErrorKind.OVER_QUOTA),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, "size: 30 MiB > 20 MiB", StoreErrorKind.TOO_BIG),
        # store.message_ops ends a Watch / WatchAccount its queue overflowed for with these
        (
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "watch: this stream fell more than 1000 events behind; resubscribe with since_modseq to catch up",
            StoreErrorKind.FELL_BEHIND,
        ),
        (
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "watch_account: this stream fell more than 1000 events behind",
            StoreErrorKind.FELL_BEHIND,
        ),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, "Received message larger than max", StoreErrorKind.INTERNAL),
        (grpc.StatusCode.FAILED_PRECONDITION, "fenced: epoch 1 < 2", StoreErrorKind.FENCED),
        (grpc.StatusCode.FAILED_PRECONDITION, "mailbox has children", StoreErrorKind.PRECONDITION),
        (grpc.StatusCode.INVALID_ARGUMENT, "bad name", StoreErrorKind.INVALID),
        (grpc.StatusCode.UNAUTHENTICATED, "wrong password", StoreErrorKind.UNAUTHENTICATED),
        (grpc.StatusCode.UNAVAILABLE, "quiesced", StoreErrorKind.UNAVAILABLE),
        (grpc.StatusCode.INTERNAL, "bug in Fetch", StoreErrorKind.INTERNAL),
    ],
)
def test_grpc_codes_become_store_error_kinds(code: grpc.StatusCode, details: str, kind: StoreErrorKind) -> None:
    assert store_error(_Failed(code, details)).kind is kind


@pytest.mark.parametrize(
    ("kind", "context", "status", "code"),
    [
        (StoreErrorKind.NOT_FOUND, Context.GENERAL, b"NO", b"[NONEXISTENT]"),
        (StoreErrorKind.NOT_FOUND, Context.APPEND_OR_COPY, b"NO", b"[TRYCREATE]"),
        (StoreErrorKind.ALREADY_EXISTS, Context.CREATE, b"NO", b"[ALREADYEXISTS]"),
        (StoreErrorKind.OVER_QUOTA, Context.APPEND_OR_COPY, b"NO", b"[OVERQUOTA]"),
        (StoreErrorKind.TOO_BIG, Context.APPEND_OR_COPY, b"NO", b"[TOOBIG]"),
        (StoreErrorKind.INVALID, Context.CREATE, b"NO", b"[CANNOT]"),
        (StoreErrorKind.UNAVAILABLE, Context.GENERAL, b"NO", b"[UNAVAILABLE]"),
        (StoreErrorKind.FENCED, Context.GENERAL, b"NO", b"[UNAVAILABLE]"),
        (StoreErrorKind.UNAUTHENTICATED, Context.LOGIN, b"NO", b"[AUTHENTICATIONFAILED]"),
        (StoreErrorKind.INTERNAL, Context.GENERAL, b"NO", b"[SERVERBUG]"),
    ],
)
def test_store_errors_become_imap_responses(kind: StoreErrorKind, context: Context, status: bytes, code: bytes) -> None:
    reply = reply_for(StoreError(kind, "detail\r\n* injected"), context)
    assert reply.status == status and reply.text.startswith(code)
    assert b"\r" not in reply.text and b"\n" not in reply.text
    assert reply.fenced == (kind is StoreErrorKind.FENCED)
