"""The delivery log's writer: records leave after the LMTP reply, batched, from one thread.

The log is best effort (a failure to write it never changes a reply), so a
delivery does not wait for it: each record of a delivery used to cost a
second durable store commit before the reply, which halved the rate of a
single LMTP connection. Records queue here (bounded: past QUEUE_LIMIT they are
dropped with a warning rather than growing memory) and one thread sends what
has queued in one RecordDeliveries call, so a busy lmtpd writes the log in a
few large transactions. close() sends what is left.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from typing import Final

import grpc

from mailha_api import settings_pb2

log = logging.getLogger("mailha.lmtpd.settings")
QUEUE_LIMIT: Final = 10_000  # records waiting to be written
BATCH_LIMIT: Final = 500  # records per RecordDeliveries call
_STOP: Final = None


class DeliveryLogWriter:
    def __init__(self, send: Callable[[settings_pb2.RecordDeliveriesRequest], object], epoch: int) -> None:
        self._send = send
        self._epoch = epoch
        self._queue: queue.Queue[settings_pb2.DeliveryRecord | None] = queue.Queue(maxsize=QUEUE_LIMIT)
        self._dropped = 0
        self._thread = threading.Thread(target=self._run, name="delivery-log", daemon=True)
        self._thread.start()

    def submit(self, records: Sequence[settings_pb2.DeliveryRecord]) -> None:
        """Queue `records`; never blocks (a full queue drops them, counted in the log)."""
        for record in records:
            try:
                self._queue.put_nowait(record)
            except queue.Full:
                self._dropped += 1
                if self._dropped == 1 or self._dropped % 1000 == 0:
                    log.warning("delivery log behind: %d records dropped", self._dropped)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            batch = [] if first is _STOP else [first]
            stopping = first is _STOP
            while len(batch) < BATCH_LIMIT:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is _STOP:
                    stopping = True
                    break
                batch.append(more)
            if batch:
                try:
                    self._send(settings_pb2.RecordDeliveriesRequest(epoch=self._epoch, records=batch))
                except grpc.RpcError as exc:
                    log.warning("delivery log: %d records not written (%s)", len(batch), exc.code())
            if stopping and self._queue.empty():
                return

    def close(self, timeout: float = 10.0) -> None:
        """Send what is queued (up to `timeout` seconds), then stop the thread."""
        try:
            self._queue.put(_STOP, timeout=timeout)
        except queue.Full:
            log.warning("delivery log: closing with a full queue")
            return
        self._thread.join(timeout)
