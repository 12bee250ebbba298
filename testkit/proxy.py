"""The loopback HTTP proxy in front of DynamoDB Local: injected faults, latency, counts.

One proxy for the tests (faults DynamoDB Local never gives) and the benchmarks (the round
trip of an in-region call). Everything not faulted passes through as DynamoDB Local answered
it, headers and ``x-amz-crc32`` included.

Faults: for each ``BatchWriteItem`` (numbered from 0 in arrival order) ``schedule`` may
return a :class:`Fault`:

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

Capacity (:class:`WriteCapacity`, ``capacity={table: WriteCapacity(rate)}``): a token
bucket of write units per target table, answering ``BatchWriteItem`` as DynamoDB does when
a table is under-provisioned: the deletes that fit are made, the rest come back in
``UnprocessedItems``, and ``ProvisionedThroughputExceededException`` only when none fits. A
delete costs one write unit per started KB of the item it deletes, one for an item already
gone (DynamoDB Local never throttles, so this is the only throttling the suite sees).

Latency: every request waits half of ``latency_ms`` before it is handled and half before
its answer goes back, so each call pays one round trip on top of DynamoDB Local's time.

Counts (:class:`Counts`): requests per operation, answers per status, error answers per
error type, faults per kind, the items of every ``BatchWriteItem``, and the keys answered
``ValidationException`` in a one-key request (``rejected_alone``: the scavenger treats those
as unmappable, so they may stay in the table unreported). ``proxy.counts`` is live;
``proxy.counts()`` is a JSON-ready snapshot, which ``GET /__bench__/counts`` answers (not
counted, no latency) so a benchmark worker in another process can read it (:func:`read_counts`).

Bounded: it listens on 127.0.0.1 only, forwards only to a loopback upstream, stops by itself
after ``max_seconds`` and answers 503 to requests past ``max_requests``.

``FaultProxy(upstream, schedule)`` and ``LatencyProxy(upstream, latency_ms)`` are this proxy
with the argument each use needs first.
"""

from __future__ import annotations

import base64
import functools
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
from typing import Any, ClassVar, Self
from urllib.parse import urlparse
from urllib.request import urlopen

COUNTS_PATH = "/__bench__/counts"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
JSON_HEADERS = (("Content-Type", "application/x-amz-json-1.0"),)
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection"}
)

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


def no_faults(index: int, body: dict[str, Any]) -> Fault | None:
    return None


def item_size(item: dict[str, Any]) -> int:
    """An item's size in bytes by DynamoDB's rules: attribute names plus values (strings and
    binaries by length, numbers about one byte per two digits, 3 bytes per list or map)."""
    return sum(len(name.encode()) + _value_size(value) for name, value in item.items())


def _value_size(value: dict[str, Any]) -> int:
    ((kind, data),) = value.items()
    if kind == "S":
        return len(data.encode())
    if kind == "B":
        return len(base64.b64decode(data))
    if kind == "N":
        return (len(data.lstrip("-").replace(".", "").lstrip("0")) + 1) // 2 + 1
    if kind in ("BOOL", "NULL"):
        return 1
    if kind in ("SS", "BS", "NS"):
        return sum(_value_size({kind[0]: member}) for member in data)
    if kind == "L":
        return 3 + sum(1 + _value_size(member) for member in data)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + _value_size(v) for k, v in data.items())
    raise ValueError(f"unknown attribute type {kind!r}")


def delete_cost(item: dict[str, Any] | None) -> int:
    """Write units of deleting ``item`` (None: already gone): one per started KB, at least one."""
    return 1 if item is None else max(1, -(-item_size(item) // 1024))


class WriteCapacity:
    """A table's provisioned write capacity: a token bucket of ``units_per_s`` that banks
    unused capacity for up to ``burst_s`` seconds (DynamoDB keeps 300), starting with
    ``banked_s`` seconds of it. ``clock`` is for tests."""

    def __init__(
        self,
        units_per_s: float,
        *,
        burst_s: float = 300.0,
        banked_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if units_per_s <= 0 or not 0 <= banked_s <= burst_s:
            raise ValueError("units_per_s must be > 0 and 0 <= banked_s <= burst_s")
        self.units_per_s, self.burst_s, self._clock = units_per_s, burst_s, clock
        self._level = units_per_s * banked_s
        self._at = clock()
        self._lock = threading.Lock()

    def take(self, costs: list[int]) -> list[bool]:
        """Which of the deletes costing ``costs``, in order, fit now; those are paid for."""
        with self._lock:
            now = self._clock()
            ceiling = self.units_per_s * self.burst_s
            self._level = min(ceiling, self._level + (now - self._at) * self.units_per_s)
            self._at = now
            fits = []
            for cost in costs:
                fit = cost <= self._level
                if fit:
                    self._level -= cost
                fits.append(fit)
            return fits


@dataclass
class Counts:
    """What the proxy saw; calling it gives the counters as plain dicts (JSON-ready)."""

    GROUPS: ClassVar[tuple[str, ...]] = (
        "operations",
        "statuses",
        "errors",
        "faults",
        "write_units",
        "write_units_absent",
        "throttled_deletes",
        "throttled_requests",
    )

    #: Requests per operation (``X-Amz-Target``), refused ones not counted.
    operations: Counter[str] = field(default_factory=Counter)
    #: Answers per ``Operation:status``.
    statuses: Counter[str] = field(default_factory=Counter)
    #: Answers of status 400 or more per ``Operation:ErrorType``.
    errors: Counter[str] = field(default_factory=Counter)
    #: Injected faults per ``kind`` or ``kind:code``.
    faults: Counter[str] = field(default_factory=Counter)
    #: The number of items of each BatchWriteItem, in arrival order.
    batch_items: list[int] = field(default_factory=list)
    #: (table, key as JSON with sorted keys) answered ValidationException in a one-key request.
    rejected_alone: set[tuple[str, str]] = field(default_factory=set)
    #: Under a :class:`WriteCapacity`: write units consumed per table, the part of them spent
    #: on items already gone (re-deletes), the deletes answered unprocessed, and the requests
    #: per table that had any (or all) of theirs held back.
    write_units: Counter[str] = field(default_factory=Counter)
    write_units_absent: Counter[str] = field(default_factory=Counter)
    throttled_deletes: Counter[str] = field(default_factory=Counter)
    throttled_requests: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def __call__(self) -> dict[str, dict[str, int]]:
        with self.lock:
            return {group: dict(getattr(self, group)) for group in self.GROUPS}


@dataclass
class _Answer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    #: "upstream": the headers as they came; "good", "bad", "none": x-amz-crc32 made so.
    crc: str = "good"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as boto3's connection pool expects

    def __init__(self, *args: Any, proxy: LoopbackProxy) -> None:
        self.proxy = proxy
        #: One upstream connection per client connection, kept alive like the client's.
        self.upstream: http.client.HTTPConnection | None = None
        super().__init__(*args)

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes: without this, Nagle's algorithm
        # and the client's delayed ACK add about 40 ms to every answer.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            if self.upstream is not None:
                self.upstream.close()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def do_POST(self) -> None:  # noqa: N802
        self.proxy._post(self)

    def do_GET(self) -> None:  # noqa: N802
        self.proxy._get(self)


class LoopbackProxy:
    """``with LoopbackProxy(ddb_local.endpoint_url, ...) as proxy: ... proxy.url ...``"""

    def __init__(
        self,
        upstream: str,
        *,
        schedule: Schedule | None = None,
        latency_ms: float = 0.0,
        capacity: dict[str, WriteCapacity] | None = None,
        seed: int = 0,
        max_seconds: float = 3600.0,
        max_requests: int = 1_000_000,
    ) -> None:
        parsed = urlparse(upstream)
        if parsed.scheme != "http" or parsed.hostname not in LOOPBACK_HOSTS or not parsed.port:
            raise ValueError(f"upstream must be a loopback http://host:port URL, got {upstream!r}")
        if not 0 <= latency_ms <= 10_000:
            raise ValueError("latency_ms must be 0..10000")
        self.upstream_host, self.upstream_port = parsed.hostname, parsed.port
        self.schedule: Schedule = schedule or no_faults
        self.capacity = dict(capacity or {})
        self.latency_s = latency_ms / 1000.0
        self.max_seconds, self.max_requests = max_seconds, max_requests
        self.counts = Counts()
        self._accepted = 0
        self._rng = random.Random(seed)
        self._stopped = threading.Event()
        handler = functools.partial(_Handler, proxy=self)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="loopback-proxy", daemon=True
        )  # polls for stop() every 50 ms, so a test's proxy stops at once
        self._watchdog = threading.Timer(max_seconds, self.stop)
        self._watchdog.daemon = True

    # -- life cycle ------------------------------------------------------------------------

    def start(self) -> Self:
        self._thread.start()
        self._watchdog.start()
        return self

    def stop(self) -> None:
        """Stop serving (idempotent; also called by the watchdog after ``max_seconds``)."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self._watchdog.cancel()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- request handling ------------------------------------------------------------------

    def _get(self, handler: _Handler) -> None:
        if handler.path != COUNTS_PATH:
            self._send(handler, _Answer(404, [], b"not found", crc="none"))
            return
        body = json.dumps(self.counts(), sort_keys=True).encode()
        self._send(handler, _Answer(200, [("Content-Type", "application/json")], body, "none"))

    def _post(self, handler: _Handler) -> None:
        body = handler.rfile.read(int(handler.headers.get("Content-Length", 0)))
        operation = handler.headers.get("X-Amz-Target", "").rpartition(".")[2] or "unknown"
        fault = None
        counts = self.counts
        with counts.lock:
            refused = self._accepted >= self.max_requests
            if not refused:
                self._accepted += 1
                counts.operations[operation] += 1
            if not refused and operation == "BatchWriteItem":
                request = json.loads(body)
                counts.batch_items.append(sum(len(v) for v in request["RequestItems"].values()))
                fault = self.schedule(counts.operations[operation] - 1, request)
                if fault is not None:
                    counts.faults[fault.kind + (":" + fault.code if fault.code else "")] += 1
                if fault is not None and (fault.code, fault.crc) == ("ValidationException", "good"):
                    counts.rejected_alone |= _single_key(request)
        if refused:
            message = b"loopback proxy: request budget exhausted"
            self._send(handler, _Answer(503, [], message, crc="none"))
            return
        half = self.latency_s / 2
        if half:
            time.sleep(half)
        answer = self._answer(handler, body, fault)
        if half:
            time.sleep(half)
        if answer is None:
            handler.close_connection = True
            handler.connection.shutdown(socket.SHUT_RDWR)
            return
        with counts.lock:
            counts.statuses[f"{operation}:{answer.status}"] += 1
            if answer.status >= 400:
                counts.errors[f"{operation}:{_error_type(answer.body)}"] += 1
        self._send(handler, answer)

    def _answer(self, handler: _Handler, body: bytes, fault: Fault | None) -> _Answer | None:
        """What goes back for this request; None: close the connection without an answer."""
        if fault is None and self.capacity and _is_batch_write(handler):
            return self._within_capacity(handler, json.loads(body))
        if fault is None:
            return self._forward(handler, body)
        if fault.kind == "slow":
            time.sleep(fault.seconds)
            return self._forward(handler, body)
        if fault.kind == "error":
            payload = {"__type": ERROR_TYPES[fault.code] + fault.code, "message": "injected"}
            return _Answer(fault.status, [*JSON_HEADERS], json.dumps(payload).encode(), fault.crc)
        if fault.kind == "drop":
            if fault.after:
                self._forward(handler, body)
            return None
        if fault.kind == "unprocessed":
            request = json.loads(body)
            return self._partial(handler, request, self._held(request, fault))
        if fault.kind == "answer":
            if not fault.after:
                return _Answer(200, [*JSON_HEADERS], fault.body or b"", fault.crc)
            forwarded = self._forward(handler, body)
            own = forwarded.body if fault.body is None else fault.body
            return _Answer(forwarded.status, forwarded.headers, own, fault.crc)
        raise ValueError(f"unknown fault kind {fault.kind!r}")

    def _within_capacity(self, handler: _Handler, request: dict[str, Any]) -> _Answer:
        """Make the deletes the tables' capacity allows now; answer the rest unprocessed."""
        held: dict[str, set[int]] = {}
        for table, items in request["RequestItems"].items():
            bucket = self.capacity.get(table)
            if bucket is None:
                continue
            found = self._lookup(handler, table, [i["DeleteRequest"]["Key"] for i in items])
            costs = [delete_cost(item) for item in found]
            fits = bucket.take(costs)
            held[table] = {i for i, fit in enumerate(fits) if not fit}
            with self.counts.lock:
                for item, cost, fit in zip(found, costs, fits, strict=True):
                    if fit:
                        self.counts.write_units[table] += cost
                        self.counts.write_units_absent[table] += cost if item is None else 0
                self.counts.throttled_deletes[table] += len(held[table])
                self.counts.throttled_requests[table] += bool(held[table])
        total = sum(len(items) for items in request["RequestItems"].values())
        if total and sum(len(h) for h in held.values()) == total:
            code = "ProvisionedThroughputExceededException"
            payload = {"__type": ERROR_TYPES[code] + code, "message": "capacity model"}
            return _Answer(400, [*JSON_HEADERS], json.dumps(payload).encode())
        return self._partial(handler, request, held)

    def _lookup(
        self, handler: _Handler, table: str, keys: list[dict[str, Any]]
    ) -> list[dict[str, Any] | None]:
        """The items under ``keys`` as DynamoDB Local has them now (None: absent)."""
        distinct = list({json.dumps(k, sort_keys=True): k for k in keys}.values())
        lookup = {"RequestItems": {table: {"Keys": distinct, "ConsistentRead": True}}}
        answer = self._forward(handler, json.dumps(lookup).encode(), "BatchGetItem")
        if answer.status != 200:
            raise RuntimeError(f"capacity model: BatchGetItem answered {answer.status}")
        items = json.loads(answer.body)["Responses"].get(table, [])
        by_key = {
            json.dumps({name: item[name] for name in keys[0]}, sort_keys=True): item
            for item in items
        }
        return [by_key.get(json.dumps(k, sort_keys=True)) for k in keys]

    def _held(self, request: dict[str, Any], fault: Fault) -> dict[str, set[int]]:
        """Per table, the indexes of the items an ``unprocessed`` fault holds back."""
        held: dict[str, set[int]] = {}
        for table, items in request["RequestItems"].items():
            if fault.pick is not None:
                held[table] = set(fault.pick(items))
            else:
                count = round(len(items) * fault.fraction)
                with self.counts.lock:
                    held[table] = set(self._rng.sample(range(len(items)), count))
        return held

    def _partial(
        self, handler: _Handler, request: dict[str, Any], held: dict[str, set[int]]
    ) -> _Answer:
        """Forward all but the ``held`` items; answer those as ``UnprocessedItems``."""
        processed: dict[str, list[Any]] = {}
        unprocessed: dict[str, list[Any]] = {}
        for table, items in request["RequestItems"].items():
            back = held.get(table, set())
            processed[table] = [item for i, item in enumerate(items) if i not in back]
            unprocessed[table] = [item for i, item in enumerate(items) if i in back]
        processed = {t: v for t, v in processed.items() if v}
        unprocessed = {t: v for t, v in unprocessed.items() if v}
        answer: dict[str, Any] = {}
        headers = [*JSON_HEADERS]
        if processed:
            forwarded = self._forward(
                handler, json.dumps({**request, "RequestItems": processed}).encode()
            )
            if forwarded.status != 200:
                return forwarded
            answer, headers = json.loads(forwarded.body), forwarded.headers
        answer["UnprocessedItems"] = unprocessed
        return _Answer(200, headers, json.dumps(answer).encode(), crc="good")

    def _forward(self, handler: _Handler, body: bytes, operation: str = "") -> _Answer:
        skip = _HOP_BY_HOP | {"host"}
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in skip}
        if operation:  # a request of the proxy's own (unsigned: DynamoDB Local does not check)
            headers = {
                "Content-Type": "application/x-amz-json-1.0",
                "X-Amz-Target": f"DynamoDB_20120810.{operation}",
                "Authorization": headers.get("Authorization", ""),
            }
        for attempt in (1, 2):
            connection = handler.upstream
            if connection is None:
                connection = http.client.HTTPConnection(
                    self.upstream_host, self.upstream_port, timeout=60
                )
                connection.connect()
                connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                handler.upstream = connection
            try:
                connection.request("POST", handler.path, body=body, headers=headers)
                response = connection.getresponse()
                data = response.read()
            except (http.client.HTTPException, OSError):
                connection.close()
                handler.upstream = None
                if attempt == 2:
                    raise
                continue
            kept = [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP]
            return _Answer(response.status, kept, data, crc="upstream")
        raise AssertionError("unreachable")

    @staticmethod
    def _send(handler: _Handler, answer: _Answer) -> None:
        headers = answer.headers
        if answer.crc != "upstream":
            headers = [(k, v) for k, v in headers if k.lower() != "x-amz-crc32"]
            checksum = zlib.crc32(answer.body) & 0xFFFFFFFF
            if answer.crc == "bad":
                checksum ^= 1
            if answer.crc != "none":
                headers.append(("x-amz-crc32", str(checksum)))
        handler.send_response_only(answer.status)
        for name, value in headers:
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(answer.body)))
        handler.end_headers()
        handler.wfile.write(answer.body)


class FaultProxy(LoopbackProxy):
    """``with FaultProxy(ddb_local.endpoint_url, schedule) as proxy: ... proxy.url ...``"""

    def __init__(
        self,
        upstream: str,
        schedule: Schedule | None = None,
        seed: int = 0,
        *,
        latency_ms: float = 0.0,
        max_seconds: float = 3600.0,
        max_requests: int = 1_000_000,
    ) -> None:
        super().__init__(
            upstream,
            schedule=schedule,
            latency_ms=latency_ms,
            seed=seed,
            max_seconds=max_seconds,
            max_requests=max_requests,
        )


class LatencyProxy(LoopbackProxy):
    """``with LatencyProxy(ddb_local.endpoint_url, latency_ms=5) as proxy: ... proxy.url ...``
    (5 ms by default: about an in-region call)."""

    def __init__(
        self,
        upstream: str,
        latency_ms: float = 5.0,
        *,
        schedule: Schedule | None = None,
        seed: int = 0,
        max_seconds: float = 3600.0,
        max_requests: int = 1_000_000,
    ) -> None:
        super().__init__(
            upstream,
            schedule=schedule,
            latency_ms=latency_ms,
            seed=seed,
            max_seconds=max_seconds,
            max_requests=max_requests,
        )


def _is_batch_write(handler: _Handler) -> bool:
    return handler.headers.get("X-Amz-Target", "").endswith(".BatchWriteItem")


def _single_key(request: dict[str, Any]) -> set[tuple[str, str]]:
    """The (table, key) of a one-key request; empty for a request of several keys."""
    items = [(t, i) for t, its in request["RequestItems"].items() for i in its]
    if len(items) != 1:
        return set()
    ((table, item),) = items
    return {(table, json.dumps(item["DeleteRequest"]["Key"], sort_keys=True))}


def _error_type(data: bytes) -> str:
    try:
        kind = json.loads(data).get("__type", "")
    except (ValueError, AttributeError):
        return "unparsed"
    return str(kind).rpartition("#")[2] or "unknown"


def read_counts(proxy_url: str) -> dict[str, dict[str, int]]:
    """The counts of the proxy at ``proxy_url`` (from any process on this machine)."""
    with urlopen(proxy_url + COUNTS_PATH, timeout=10) as response:  # noqa: S310 - loopback
        counts: dict[str, dict[str, int]] = json.loads(response.read())
        return counts


def difference(
    after: dict[str, dict[str, int]], before: dict[str, dict[str, int]]
) -> dict[str, dict[str, int]]:
    """``after - before``, per group, dropping zeros."""
    out: dict[str, dict[str, int]] = {}
    for group, values in after.items():
        base = before.get(group, {})
        delta = {k: v - base.get(k, 0) for k, v in values.items() if v - base.get(k, 0)}
        out[group] = delta
    return out
