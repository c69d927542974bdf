"""AppendPipeline over gRPC: ordering past the in-flight bound, and a stream-level error at the end."""

from __future__ import annotations

import grpc
import pytest

from mailha_api import store_pb2
from store.servicer import PIPELINE_IN_FLIGHT
from tests.store_fixtures import StoreServer, rpc_status

pytestmark = pytest.mark.integration
MSG = b"From: a@example.org\r\nSubject: pipe\r\n\r\nhello\r\n"


def test_pipeline_answers_every_message_in_order_then_ends_with_the_stream_error(store_server: StoreServer) -> None:
    with store_server.client() as c:
        c.create_user("alice", "pw")
        mid = c.mailbox_id("alice", "INBOX")
        good = store_pb2.AppendHeader(epoch=1, user="alice", mailbox_id=mid)
        stale = store_pb2.AppendHeader(epoch=0, user="alice", mailbox_id=mid)  # fenced: fails alone, in order
        total = 2 * PIPELINE_IN_FLIGHT + 5  # more than the server keeps in flight: it must wait for room
        requests = [
            store_pb2.AppendRequest(header=stale if n % 50 == 7 else good, data=MSG + b"%d" % n, last=True)
            for n in range(total)
        ]
        # A request without a header where a message must start ends the whole call.
        requests.append(store_pb2.AppendRequest(data=b"orphan", last=True))
        replies: list[store_pb2.AppendReply] = []
        with pytest.raises(grpc.RpcError) as info:
            for reply in c.stub.AppendPipeline(iter(requests), timeout=60):
                replies.append(reply)
        code, details = rpc_status(info.value)
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "must carry `header`" in details
        assert len(replies) == total
        failed = [n for n, r in enumerate(replies) if r.error_code]
        assert failed == [n for n in range(total) if n % 50 == 7]
        assert all("fenced" in replies[n].error_message for n in failed)
        uids = [r.uid for r in replies if not r.error_code]
        assert uids == list(range(1, total - len(failed) + 1))  # in request order, no gaps
        assert c.select("alice", "INBOX").mailbox.status.messages == len(uids)
        assert c.fetch_body("alice", mid, uids[-1]) == MSG + b"%d" % (total - 1)
