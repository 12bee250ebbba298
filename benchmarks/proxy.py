"""A loopback HTTP proxy in front of DynamoDB Local that adds round-trip latency and counts.

Every request waits half the configured latency before it is forwarded and half after the
answer came back, so each call pays one round trip (default 5 ms, about an in-region call)
on top of DynamoDB Local's own time. The proxy counts requests per operation, the answers
per HTTP status, and error answers per error type (``ValidationException`` and friends).

Bounded: it listens on 127.0.0.1 only, forwards only to a loopback upstream, stops by itself
after ``max_seconds`` and refuses to forward more than ``max_requests`` requests.

``GET /__bench__/counts`` answers the counts as JSON (not counted, no latency), so a
benchmark worker in another process can read the counts before and after a measured call.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlparse
from urllib.request import urlopen

COUNTS_PATH = "/__bench__/counts"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection"}
)


class LatencyProxy:
    """``with LatencyProxy(ddb_local.endpoint_url, latency_ms=5) as proxy: ... proxy.url ...``"""

    def __init__(
        self,
        upstream: str,
        latency_ms: float = 5.0,
        *,
        max_seconds: float = 3600.0,
        max_requests: int = 1_000_000,
    ) -> None:
        parsed = urlparse(upstream)
        if parsed.hostname not in LOOPBACK_HOSTS or parsed.port is None:
            raise ValueError(f"upstream must be a loopback http://host:port URL, got {upstream!r}")
        if not 0 <= latency_ms <= 10_000:
            raise ValueError("latency_ms must be 0..10000")
        self.upstream_host = parsed.hostname
        self.upstream_port = parsed.port
        self.latency_s = latency_ms / 1000.0
        self.max_seconds = max_seconds
        self.max_requests = max_requests
        self._lock = threading.Lock()
        self._operations: Counter[str] = Counter()
        self._statuses: Counter[str] = Counter()
        self._errors: Counter[str] = Counter()
        self._forwarded = 0
        self._stopped = threading.Event()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as boto3's connection pool expects

            def setup(self) -> None:
                super().setup()
                # Headers and body go out in separate writes: without this, Nagle's algorithm
                # and the client's delayed ACK add about 40 ms to every answer.
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def do_POST(self) -> None:  # noqa: N802
                proxy._handle_post(self)

            def do_GET(self) -> None:  # noqa: N802
                proxy._handle_get(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="latency-proxy", daemon=True
        )
        self._watchdog = threading.Timer(max_seconds, self.stop)
        self._watchdog.daemon = True

    # -- life cycle ------------------------------------------------------------------------

    def start(self) -> LatencyProxy:
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

    def __enter__(self) -> LatencyProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- counts ----------------------------------------------------------------------------

    def counts(self) -> dict[str, dict[str, int]]:
        """Requests per operation, answers per status, error answers per error type."""
        with self._lock:
            return {
                "operations": dict(self._operations),
                "statuses": dict(self._statuses),
                "errors": dict(self._errors),
            }

    # -- request handling ------------------------------------------------------------------

    def _handle_get(self, handler: BaseHTTPRequestHandler) -> None:
        if handler.path != COUNTS_PATH:
            self._reply(handler, 404, [], b"not found")
            return
        self._reply(handler, 200, [("Content-Type", "application/json")], _dumps(self.counts()))

    def _handle_post(self, handler: BaseHTTPRequestHandler) -> None:
        body = handler.rfile.read(int(handler.headers.get("Content-Length", 0)))
        operation = handler.headers.get("X-Amz-Target", "").rpartition(".")[2] or "unknown"
        with self._lock:
            over = self._forwarded >= self.max_requests
            if not over:
                self._forwarded += 1
                self._operations[operation] += 1
        if over:
            self._reply(handler, 503, [], b"benchmark proxy: request budget exhausted")
            return
        half = self.latency_s / 2
        if half:
            time.sleep(half)
        status, headers, data = self._forward(handler, body)
        if half:
            time.sleep(half)
        with self._lock:
            self._statuses[f"{operation}:{status}"] += 1
            if status >= 400:
                self._errors[f"{operation}:{_error_type(data)}"] += 1
        self._reply(handler, status, headers, data)

    def _forward(
        self, handler: BaseHTTPRequestHandler, body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        skip = _HOP_BY_HOP | {"host"}
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in skip}
        for attempt in (1, 2):
            # One upstream connection per client connection, kept alive like the client's.
            connection: http.client.HTTPConnection | None = getattr(handler, "_upstream", None)
            if connection is None:
                connection = http.client.HTTPConnection(
                    self.upstream_host, self.upstream_port, timeout=60
                )
                connection.connect()
                connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                handler._upstream = connection  # type: ignore[attr-defined]
            try:
                connection.request("POST", handler.path, body=body, headers=headers)
                response = connection.getresponse()
                data = response.read()
                kept = [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP]
                return response.status, kept, data
            except (http.client.HTTPException, OSError):
                connection.close()
                handler._upstream = None  # type: ignore[attr-defined]
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    @staticmethod
    def _reply(
        handler: BaseHTTPRequestHandler,
        status: int,
        headers: list[tuple[str, str]],
        body: bytes,
    ) -> None:
        handler.send_response(status)
        for name, value in headers:
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)


def _error_type(data: bytes) -> str:
    try:
        kind = json.loads(data).get("__type", "")
    except (ValueError, AttributeError):
        return "unparsed"
    return str(kind).rpartition("#")[2] or "unknown"


def _dumps(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True).encode()


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
