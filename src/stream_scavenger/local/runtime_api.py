"""The Lambda Runtime API of one execution environment, on loopback.

Lambda's own runtime client (``python -m awslambdaric``) asks this server for the next
event and posts the answer, exactly as it does in Lambda (the API is documented in
"Using the Lambda runtime API for custom runtimes"). One server serves one runtime
process; a fresh process gets a fresh server, so a request left over from a killed
process can never take the next event. Events go out one at a time.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

PREFIX = "/2018-06-01/runtime"
#: The header the runtime client sets on error posts: the error's type.
ERROR_TYPE_HEADER = "Lambda-Runtime-Function-Error-Type"


@dataclass(frozen=True)
class Answer:
    """What the runtime posted: ``response``, ``error`` or ``init_error``."""

    kind: str
    request_id: str | None
    body: bytes
    content_type: str | None = None
    error_type_header: str | None = None

    def payload(self) -> Any:
        """The body as JSON (``None`` when empty)."""
        return json.loads(self.body) if self.body else None

    @property
    def error_type(self) -> str:
        """An error's type: the body's ``errorType``, else the header's."""
        body = self.payload() if self.body.startswith(b"{") else None
        found = body.get("errorType") if isinstance(body, dict) else None
        return str(found or self.error_type_header or "Runtime.Unknown")

    @property
    def error_message(self) -> str:
        """An error's ``errorMessage`` (empty when the body has none)."""
        body = self.payload() if self.body.startswith(b"{") else None
        return str(body.get("errorMessage", "")) if isinstance(body, dict) else ""


@dataclass
class _Invocation:
    request_id: str
    payload: bytes
    timeout_ms: int
    deadline_ms: int | None = None  # set when the runtime takes it


class RuntimeApi:
    """``GET .../invocation/next``, ``POST .../invocation/{id}/response`` and ``/error``,
    ``POST .../init/error``; a free loopback port, served from a thread.

    :attr:`wake_fd` becomes readable whenever the state changes (an event handed out, an
    answer posted), so a caller can wait on it together with the runtime's output pipes.
    """

    def __init__(self, function_arn: str) -> None:
        self.function_arn = function_arn
        self._pending: queue.Queue[_Invocation | None] = queue.Queue()
        self._answers: queue.Queue[Answer] = queue.Queue()
        self._current: _Invocation | None = None
        self._lock = threading.Lock()
        self._closed = False
        self.wake_fd, self._wake_write = os.pipe()
        os.set_blocking(self.wake_fd, False)
        os.set_blocking(self._wake_write, False)  # full means awake already
        self._server = _Server(("127.0.0.1", 0), _handler_class(self))
        self._server.daemon_threads = True
        self.address = f"127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="runtime-api", daemon=True
        )
        self._thread.start()

    def invoke(self, payload: bytes, timeout_s: float) -> str:
        """Queue one event for the runtime; return its request id."""
        invocation = _Invocation(str(uuid.uuid4()), payload, int(timeout_s * 1000))
        self._pending.put(invocation)
        return invocation.request_id

    def deadline_ms(self, request_id: str) -> int | None:
        """Epoch milliseconds the runtime was given for ``request_id``; None until taken."""
        with self._lock:
            current = self._current
        return current.deadline_ms if current and current.request_id == request_id else None

    def answer(self, timeout_s: float = 0) -> Answer | None:
        """The next answer posted, waiting up to ``timeout_s``; None if there is none yet."""
        self._drain_wake()
        try:
            if timeout_s > 0:
                return self._answers.get(timeout=timeout_s)
            return self._answers.get_nowait()
        except queue.Empty:
            return None

    def close(self) -> None:
        """Stop serving; a runtime still waiting for an event gets an error."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            os.close(self._wake_write)
            os.close(self.wake_fd)
        self._pending.put(None)  # wakes a waiting GET
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> RuntimeApi:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # Called from the server's threads.

    def _next(self) -> _Invocation | None:
        invocation = self._pending.get()
        if invocation is None:
            self._pending.put(None)  # for any other waiting request
            return None
        invocation.deadline_ms = int(time.time() * 1000) + invocation.timeout_ms
        with self._lock:
            self._current = invocation
        self._wake()
        return invocation

    def _accept(self, answer: Answer) -> bool:
        """Whether ``answer`` is for the event being handled (Lambda refuses others)."""
        with self._lock:
            current = self._current
            if answer.kind == "init_error":
                return True
            if current is None or current.request_id != answer.request_id:
                return False
            self._current = None
            return True

    def _deliver(self, answer: Answer) -> None:
        self._answers.put(answer)
        self._wake()

    def _wake(self) -> None:
        with self._lock:  # never write to a closed (perhaps reused) descriptor
            if not self._closed:
                with contextlib.suppress(BlockingIOError):
                    os.write(self._wake_write, b".")

    def _drain_wake(self) -> None:
        with self._lock:
            if self._closed:
                return
            try:
                while os.read(self.wake_fd, 4096):
                    pass
            except BlockingIOError:
                pass


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a killed runtime is no news
            super().handle_error(request, client_address)


def _handler_class(api: RuntimeApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # the runtime client keeps its connection open
        disable_nagle_algorithm = True  # else each answer waits out a delayed ACK (40 ms)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

        def do_GET(self) -> None:  # noqa: N802
            if self.path != f"{PREFIX}/invocation/next":
                self._reply(404, {"errorMessage": "not found", "errorType": "NotFound"})
                return
            invocation = api._next()
            if invocation is None:
                self._reply(500, {"errorMessage": "shutting down", "errorType": "Shutdown"})
                return
            self._send(
                200,
                invocation.payload,
                {
                    "Lambda-Runtime-Aws-Request-Id": invocation.request_id,
                    "Lambda-Runtime-Deadline-Ms": str(invocation.deadline_ms),
                    "Lambda-Runtime-Invoked-Function-Arn": api.function_arn,
                    "Lambda-Runtime-Trace-Id": _trace_id(),
                },
            )

        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            parts = self.path.removeprefix(PREFIX + "/").split("/")
            if parts == ["init", "error"]:
                answer = Answer("init_error", None, body, error_type_header=self._error_type())
            elif len(parts) == 3 and parts[0] == "invocation" and parts[2] in ("response", "error"):
                answer = Answer(
                    parts[2],
                    parts[1],
                    body,
                    self.headers.get("Content-Type"),
                    self._error_type() if parts[2] == "error" else None,
                )
            else:
                self._reply(404, {"errorMessage": "not found", "errorType": "NotFound"})
                return
            if not api._accept(answer):
                message = f"unknown request id {parts[1]}"
                self._reply(400, {"errorMessage": message, "errorType": "InvalidRequestID"})
                return
            try:
                self._reply(202, {"status": "OK"})
            finally:  # acknowledged first: after an init error the runtime exits on its own
                api._deliver(answer)

        def _error_type(self) -> str | None:
            return self.headers.get(ERROR_TYPE_HEADER)

        def _reply(self, status: int, body: dict[str, str]) -> None:
            self._send(status, json.dumps(body).encode(), {})

        def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            with contextlib.suppress(ConnectionError):  # the runtime was killed meanwhile
                self.end_headers()
                self.wfile.write(body)

    return Handler


def _trace_id() -> str:
    """An X-Ray trace header of the shape Lambda sends (sampled off)."""
    root = f"1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]}"
    return f"Root={root};Parent={uuid.uuid4().hex[:16]};Sampled=0"
