"""The deleter's worker threads: one pool per container, a new one when a request hangs.

Starting eight threads for every batch is CPU a warm container need not spend; but a request
still hanging from the last invocation (until its read timeout) must not hold a worker the
next one needs.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from stream_scavenger.runtime.scavenger.deleter import BatchDeleter, Deadline
from stream_scavenger.runtime.scavenger.records import TargetKey, identity_of


def keys(n: int, start: int = 0) -> list[TargetKey]:
    out = []
    for i in range(start, start + n):
        request = {"pk": {"S": f"k{i}"}}
        out.append(TargetKey(table="staging", identity=identity_of(request), request=request))
    return out


def deadline(budget_s: float) -> Deadline:
    end = time.monotonic() + budget_s
    return Deadline(lambda: end - time.monotonic(), 0.0)


class MarkingClient:
    """Confirms everything; notes the threads that call it. With ``hang_first``, the first
    request waits for ``release`` (as one waits for a read timeout)."""

    def __init__(self, hang_first: bool = False) -> None:
        self._lock = threading.Lock()
        self._hang_first = hang_first
        self.release = threading.Event()
        self.calls = 0
        self.threads: set[threading.Thread] = set()

    def batch_write_item(self, **kwargs: Any) -> dict[str, Any]:
        with self._lock:
            self.calls += 1
            first = self.calls == 1
            self.threads.add(threading.current_thread())
        if first and self._hang_first:
            self.release.wait(10)
        return {"UnprocessedItems": {}}


def test_a_warm_container_reuses_its_worker_threads() -> None:
    client = MarkingClient()
    deleter = BatchDeleter(client, max_concurrency=2, max_attempts=8)
    assert deleter.delete(keys(100), deadline(10)).deleted_count == 100
    workers = {t for t in threading.enumerate() if t.name.startswith("scavenger")}
    client.threads.clear()
    assert deleter.delete(keys(100, start=100), deadline(10)).deleted_count == 100
    # every request of the second batch ran on a thread started for the first
    assert client.threads and client.threads <= workers


def test_a_request_hanging_from_the_last_invocation_holds_no_worker_of_the_next() -> None:
    client = MarkingClient(hang_first=True)
    deleter = BatchDeleter(client, max_concurrency=1, max_attempts=8)
    try:
        first = deleter.delete(keys(25), deadline(0.5))
        assert first.timed_out and first.deleted_count == 0
        # the only worker of the first pool still waits on its request
        second = deleter.delete(keys(50, start=25), deadline(5))
        assert second.deleted_count == 50 and not second.timed_out
    finally:
        client.release.set()
