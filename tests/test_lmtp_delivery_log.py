"""lmtpd's delivery-log writer: records leave after the reply, in batches, bounded, and close() sends the rest."""

from __future__ import annotations

import threading

import grpc
import pytest

from lmtpd import delivery_log
from lmtpd.delivery_log import DeliveryLogWriter
from mailha_api import settings_pb2


def _record(i: int) -> settings_pb2.DeliveryRecord:
    return settings_pb2.DeliveryRecord(message_id=f"<{i}@t>", recipient="a@t", user="a", reply_code=250)


def test_queued_records_go_out_in_batches_and_close_sends_the_rest() -> None:
    sent: list[settings_pb2.RecordDeliveriesRequest] = []
    gate = threading.Event()

    def send(request: settings_pb2.RecordDeliveriesRequest) -> None:
        gate.wait(10)  # the first call holds the thread while more records queue up
        sent.append(request)

    writer = DeliveryLogWriter(send, epoch=7)
    for i in range(1200):
        writer.submit([_record(i)])
    gate.set()
    writer.close()
    ids = [r.message_id for request in sent for r in request.records]
    assert ids == [f"<{i}@t>" for i in range(1200)]  # all of them, in order, once
    assert all(request.epoch == 7 for request in sent)
    assert len(sent) < 10 and max(len(r.records) for r in sent) == delivery_log.BATCH_LIMIT


class _Unavailable(grpc.RpcError):
    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNAVAILABLE


def test_a_full_queue_drops_records_instead_of_blocking_and_failures_do_not_stop_the_writer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(delivery_log, "QUEUE_LIMIT", 5)
    busy, gate = threading.Event(), threading.Event()
    calls: list[int] = []

    def send(request: settings_pb2.RecordDeliveriesRequest) -> None:
        busy.set()
        gate.wait(10)
        calls.append(len(request.records))
        if len(calls) == 1:
            raise _Unavailable()

    writer = DeliveryLogWriter(send, epoch=1)
    writer.submit([_record(0)])
    assert busy.wait(10)  # the thread is sending record 0 and waits on the gate
    writer.submit([_record(i) for i in range(1, 20)])  # 5 fit, 14 are dropped at once
    gate.set()
    writer.close()
    assert calls == [1, 5]  # the failed first batch did not stop the rest
