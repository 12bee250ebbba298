"""A loopback HTTP proxy in front of DynamoDB Local that injects BatchWriteItem faults.

Everything that is not ``BatchWriteItem`` passes through untouched. For each
``BatchWriteItem`` (numbered from 0 in arrival order) the test's ``schedule``
may return a :class:`Fault`:

- ``Fault.unprocessed(fraction | pick)``: forward only part of the request and
  answer the rest as ``UnprocessedItems`` (as DynamoDB does under load);
- ``Fault.error(code)``: a DynamoDB error answer (throttling and friends), or
  ``Fault.http(500 | 503)``;
- ``Fault.drop(after=False)``: close the connection without an answer, before
  (or after) forwarding the request;
- ``Fault.slow(seconds)``: answer late.

It counts requests per operation and the items of every ``BatchWriteItem``.
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

    @classmethod
    def unprocessed(
        cls, fraction: float = 0.5, pick: Callable[[list[dict[str, Any]]], list[int]] | None = None
    ) -> Fault:
        """Leave ``fraction`` of the items (or the indexes ``pick`` returns) unprocessed."""
        return cls("unprocessed", fraction=fraction, pick=pick)

    @classmethod
    def error(cls, code: str, status: int = 400) -> Fault:
        return cls("error", code=code, status=status)

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
        if fault is None:
            self._reply(handler, *self._forward(handler, body))
        elif fault.kind == "slow":
            time.sleep(fault.seconds)
            self._reply(handler, *self._forward(handler, body))
        elif fault.kind == "error":
            payload = {"__type": ERROR_TYPES[fault.code] + fault.code, "message": "injected"}
            self._reply(handler, fault.status, {}, json.dumps(payload).encode())
        elif fault.kind == "drop":
            if fault.after:
                self._forward(handler, body)
            handler.close_connection = True
            handler.connection.shutdown(socket.SHUT_RDWR)
        elif fault.kind == "unprocessed":
            self._partial(handler, json.loads(body), fault)

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
        handler: BaseHTTPRequestHandler, status: int, headers: dict[str, str], body: bytes
    ) -> None:
        handler.send_response(status)
        keep = {k: v for k, v in headers.items() if k.lower() in ("x-amzn-requestid",)}
        for name, value in keep.items():
            handler.send_header(name, value)
        handler.send_header("Content-Type", "application/x-amz-json-1.0")
        handler.send_header("x-amz-crc32", str(zlib.crc32(body) & 0xFFFFFFFF))
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)
