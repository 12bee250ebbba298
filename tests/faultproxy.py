"""A loopback HTTP proxy in front of DynamoDB Local that injects BatchWriteItem faults.

Everything that is not ``BatchWriteItem`` passes through untouched. For each
``BatchWriteItem`` (numbered from 0 in arrival order) the test's ``schedule``
may return a :class:`Fault`:

- ``Fault.unprocessed(fraction | pick)``: forward only part of the request and
  answer the rest as ``UnprocessedItems`` (as DynamoDB does under load);
- ``Fault.error(code, crc="good")``: a DynamoDB error answer (throttling and friends;
  ``crc="bad"``: with a wrong checksum), or ``Fault.http(500 | 503)``;
- ``Fault.drop(after=False)``: close the connection without an answer, before
  (or after) forwarding the request;
- ``Fault.slow(seconds)``: answer late;
- ``Fault.malformed(body)``: HTTP 200 with ``body`` (``b""``, ``b"{}"``, ...) and a
  matching ``x-amz-crc32``, nothing forwarded: a 2xx that confirms nothing;
- ``Fault.bad_crc(after=False)``: HTTP 200 with a well-formed ``{"UnprocessedItems": {}}``
  but a wrong ``x-amz-crc32``, nothing forwarded (with ``after``, DynamoDB Local's own
  answer after the deletes, its checksum made wrong);
- ``Fault.no_crc()``: DynamoDB Local's own answer without the ``x-amz-crc32`` header.

It counts requests per operation and the items of every ``BatchWriteItem``, and remembers
the keys it answered ``ValidationException`` for in a one-key request (``rejected_alone``):
the scavenger treats those as unmappable, so they may stay in the table unreported.
"""

from __future__ import annotations

import http.client
import json
import random
import socket
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlparse

ERROR_TYPES = {
    "ProvisionedThroughputExceededException": "com.amazonaws.dynamodb.v20120810#",
    "RequestLimitExceeded": "com.amazonaws.dynamodb.v20120810#",
    "ThrottlingException": "com.amazon.coral.availability#",
    "InternalServerError": "com.amazonaws.dynamodb.v20120810#",
    "ServiceUnavailable": "com.amazon.coral.availability#",
    "ValidationException": "com.amazon.coral.validate#",
    "AccessDeniedException": "com.amazon.coral.service#",
    "ResourceNotFoundException": "com.amazonaws.dynamodb.v20120810#",
}


@dataclass(frozen=True)
class Fault:
    """One injected fault; build with the class methods."""

    kind: str
    code: str = ""
    status: int = 400
    fraction: float = 0.0
    pick: Callable[[list[dict[str, Any]]], list[int]] | None = None
    seconds: float = 0.0
    after: bool = False
    #: For ``answer`` faults: the body (None: DynamoDB Local's) and the checksum header.
    body: bytes | None = None
    crc: str = "good"

    @classmethod
    def unprocessed(
        cls, fraction: float = 0.5, pick: Callable[[list[dict[str, Any]]], list[int]] | None = None
    ) -> Fault:
        """Leave ``fraction`` of the items (or the indexes ``pick`` returns) unprocessed."""
        return cls("unprocessed", fraction=fraction, pick=pick)

    @classmethod
    def error(cls, code: str, status: int = 400, crc: str = "good") -> Fault:
        """A DynamoDB error answer; ``crc="bad"`` makes its ``x-amz-crc32`` wrong."""
        return cls("error", code=code, status=status, crc=crc)

    @classmethod
    def http(cls, status: int) -> Fault:
        code = "InternalServerError" if status == 500 else "ServiceUnavailable"
        return cls("error", code=code, status=status)

    @classmethod
    def drop(cls, after: bool = False) -> Fault:
        return cls("drop", after=after)

    @classmethod
    def slow(cls, seconds: float) -> Fault:
        return cls("slow", seconds=seconds)

    @classmethod
    def malformed(cls, body: bytes) -> Fault:
        """HTTP 200 with ``body`` and its correct checksum; the request is not forwarded."""
        return cls("answer", code="malformed", body=body)

    @classmethod
    def bad_crc(cls, after: bool = False) -> Fault:
        """HTTP 200, a well-formed body, a wrong ``x-amz-crc32`` (with ``after``: forwarded)."""
        body = None if after else WELL_FORMED
        return cls("answer", code="bad-crc", body=body, after=after, crc="bad")

    @classmethod
    def no_crc(cls) -> Fault:
        """DynamoDB Local's own answer, without the ``x-amz-crc32`` header."""
        return cls("answer", code="no-crc", after=True, crc="none")


#: A BatchWriteItem answer that leaves nothing unprocessed.
WELL_FORMED = b'{"UnprocessedItems":{}}'

Schedule = Callable[[int, dict[str, Any]], "Fault | None"]


def first(n: int, fault: Fault) -> Schedule:
    """The first ``n`` BatchWriteItem requests get ``fault``."""
    return lambda index, body: fault if index < n else None


def always(fault: Fault) -> Schedule:
    return lambda index, body: fault


@dataclass
class Counts:
    """What the proxy saw."""

    operations: Counter[str] = field(default_factory=Counter)
    batch_items: list[int] = field(default_factory=list)
    faults: Counter[str] = field(default_factory=Counter)
    #: (table, key as JSON with sorted keys) answered ValidationException in a one-key request.
    rejected_alone: set[tuple[str, str]] = field(default_factory=set)


class FaultProxy:
    """``with FaultProxy(upstream) as proxy: ... proxy.url ...``"""

    def __init__(self, upstream: str, schedule: Schedule | None = None, seed: int = 0) -> None:
        self.upstream = urlparse(upstream)
        self.schedule: Schedule = schedule or (lambda index, body: None)
        self.counts = Counts()
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def do_POST(self) -> None:  # noqa: N802
                proxy._handle(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- request handling ------------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        body = handler.rfile.read(int(handler.headers.get("Content-Length", 0)))
        operation = handler.headers.get("X-Amz-Target", "").rpartition(".")[2]
        fault = None
        with self._lock:
            self.counts.operations[operation] += 1
            if operation == "BatchWriteItem":
                request = json.loads(body)
                index = self.counts.operations[operation] - 1
                self.counts.batch_items.append(
                    sum(len(v) for v in request["RequestItems"].values())
                )
                fault = self.schedule(index, request)
                if fault is not None:
                    self.counts.faults[fault.kind + (":" + fault.code if fault.code else "")] += 1
                if fault is not None and (fault.code, fault.crc) == ("ValidationException", "good"):
                    self.counts.rejected_alone |= _single_key(request)
        if fault is None:
            self._reply(handler, *self._forward(handler, body))
        elif fault.kind == "slow":
            time.sleep(fault.seconds)
            self._reply(handler, *self._forward(handler, body))
        elif fault.kind == "error":
            payload = {"__type": ERROR_TYPES[fault.code] + fault.code, "message": "injected"}
            self._reply(handler, fault.status, {}, json.dumps(payload).encode(), crc=fault.crc)
        elif fault.kind == "drop":
            if fault.after:
                self._forward(handler, body)
            handler.close_connection = True
            handler.connection.shutdown(socket.SHUT_RDWR)
        elif fault.kind == "unprocessed":
            self._partial(handler, json.loads(body), fault)
        elif fault.kind == "answer":
            status, answer = 200, fault.body
            if fault.after:
                status, _, raw = self._forward(handler, body)
                answer = raw if answer is None else answer
            self._reply(handler, status, {}, answer or b"", crc=fault.crc)

    def _partial(
        self, handler: BaseHTTPRequestHandler, request: dict[str, Any], fault: Fault
    ) -> None:
        processed: dict[str, list[Any]] = {}
        unprocessed: dict[str, list[Any]] = {}
        for table, items in request["RequestItems"].items():
            if fault.pick is not None:
                held = set(fault.pick(items))
            else:
                count = round(len(items) * fault.fraction)
                with self._lock:
                    held = set(self._rng.sample(range(len(items)), count))
            processed[table] = [item for i, item in enumerate(items) if i not in held]
            unprocessed[table] = [item for i, item in enumerate(items) if i in held]
        processed = {t: v for t, v in processed.items() if v}
        unprocessed = {t: v for t, v in unprocessed.items() if v}
        answer: dict[str, Any] = {}
        if processed:
            forwarded = {**request, "RequestItems": processed}
            status, _, raw = self._forward(handler, json.dumps(forwarded).encode())
            if status != 200:
                self._reply(handler, status, {}, raw)
                return
            answer = json.loads(raw)
        answer["UnprocessedItems"] = unprocessed
        self._reply(handler, 200, {}, json.dumps(answer).encode())

    def _forward(
        self, handler: BaseHTTPRequestHandler, body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        connection = http.client.HTTPConnection(
            self.upstream.hostname, self.upstream.port, timeout=30
        )
        try:
            headers = {
                k: v
                for k, v in handler.headers.items()
                if k.lower() not in ("host", "content-length")
            }
            connection.request("POST", handler.path, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()

    @staticmethod
    def _reply(
        handler: BaseHTTPRequestHandler,
        status: int,
        headers: dict[str, str],
        body: bytes,
        crc: str = "good",
    ) -> None:
        handler.send_response(status)
        keep = {k: v for k, v in headers.items() if k.lower() in ("x-amzn-requestid",)}
        for name, value in keep.items():
            handler.send_header(name, value)
        handler.send_header("Content-Type", "application/x-amz-json-1.0")
        checksum = zlib.crc32(body) & 0xFFFFFFFF
        if crc != "none":
            handler.send_header("x-amz-crc32", str(checksum if crc == "good" else checksum ^ 1))
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)


def _single_key(request: dict[str, Any]) -> set[tuple[str, str]]:
    """The (table, key) of a one-key request; empty for a request of several keys."""
    items = [(t, i) for t, its in request["RequestItems"].items() for i in its]
    if len(items) != 1:
        return set()
    ((table, item),) = items
    return {(table, json.dumps(item["DeleteRequest"]["Key"], sort_keys=True))}
