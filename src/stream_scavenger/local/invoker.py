"""Invoke a synthesized function through Lambda's own runtime client, as a warm container.

Each function gets one long-lived ``python -m awslambdaric <handler>`` process (the warm
execution environment), run from the function's own asset directory with an environment
built from scratch, against a :class:`~.runtime_api.RuntimeApi` on loopback. After a
timeout or a crash the next invocation starts a fresh process, as Lambda does.

The handler's EMF lines and the runtime client's log lines both go to the process's
stdout. The invoking thread reads that pipe while it waits for the answer and, once the
answer is posted, drains what is already in the pipe (the process wrote it before
posting), so every EMF document is counted for the invocation that printed it.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ..runtime.scavenger.config import TARGET_DIMENSION
from .runtime_api import Answer, RuntimeApi

if TYPE_CHECKING:
    from .assembly import FunctionDef

#: Seconds past the function's timeout before the process is killed (the runtime's own
#: answer at the deadline must not lose a race with the kill).
GRACE_S = 1.0
#: Lambda's limit on the init phase: a runtime that has not asked for the event by then
#: is stuck in init.
INIT_TIMEOUT_S = 10.0
#: The memory size Lambda gives a function that sets none.
DEFAULT_MEMORY_MB = 128
ACCOUNT_ARN = "arn:aws:lambda:us-east-1:123456789012:function:"


class FunctionError(RuntimeError):
    """The invocation failed; Lambda would count it as a function error."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(f"{error_type}: {message}")
        self.error_type = error_type


class _Sandbox:
    """One runtime process and its own Runtime API: an execution environment."""

    def __init__(self, command: list[str], env: dict[str, str], cwd: str, arn: str) -> None:
        self.api = RuntimeApi(arn)
        try:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env={**env, "AWS_LAMBDA_RUNTIME_API": self.api.address},
                cwd=cwd,
            )
        except BaseException:
            self.api.close()
            raise
        assert self.process.stdout and self.process.stderr
        self._open = [self.process.stdout.fileno(), self.process.stderr.fileno()]
        self._partial = dict.fromkeys(self._open, b"")
        for fd in self._open:
            os.set_blocking(fd, False)

    @property
    def exited(self) -> bool:
        """Both output pipes are closed: the process has ended."""
        return not self._open

    def read(self, timeout_s: float) -> list[str]:
        """The complete lines written so far, waiting up to ``timeout_s`` for output or a
        change at the Runtime API."""
        if timeout_s > 0:
            select.select([*self._open, self.api.wake_fd], [], [], timeout_s)
        lines: list[str] = []
        for fd in list(self._open):
            while True:
                try:
                    chunk = os.read(fd, 65536)
                except BlockingIOError:
                    break
                ended = not chunk
                if ended:  # the process is gone: a last line without newline still counts
                    self._open.remove(fd)
                    chunk = b"\n" if self._partial[fd] else b""
                *complete, self._partial[fd] = (self._partial[fd] + chunk).split(b"\n")
                lines += (line.decode("utf-8", "replace") for line in complete)
                if ended:
                    break
        return lines

    def stop(self) -> list[str]:
        """Kill the process (Lambda's shutdown of an environment); its last lines."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        lines = self.read(0)
        for stream in (self.process.stdout, self.process.stderr):
            if stream:
                stream.close()
        self.api.close()
        return lines


class SubprocessInvoker:
    """Runs a function's handler under ``awslambdaric`` in a warm subprocess.

    ``stderr`` receives the function's log stream (every line of the process's stdout and
    stderr, EMF documents included): a text or binary file, a file descriptor,
    ``subprocess.DEVNULL``, or None for this process's stderr.
    """

    def __init__(
        self,
        asset_dir: Path,
        handler: str,
        environment: Mapping[str, str],
        *,
        function_name: str = "local-scavenger",
        timeout_s: float = 60.0,
        stderr: Any = None,
    ) -> None:
        if importlib.util.find_spec("awslambdaric") is None:
            raise OSError(
                f"awslambdaric (Lambda's runtime interface client) is not installed for "
                f"{sys.executable}: pip install 'stream-scavenger[local]'"
            )
        # Built from scratch: nothing of this process's environment (HTTP_PROXY above all,
        # which would send loopback traffic to a proxy) reaches the function but PATH.
        self._env = {
            "PATH": os.environ.get("PATH", ""),
            "TZ": ":UTC",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_LAMBDA_FUNCTION_NAME": function_name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(DEFAULT_MEMORY_MB),
            "LAMBDA_TASK_ROOT": str(asset_dir),
            "_HANDLER": handler,
            "PYTHONPATH": str(asset_dir),  # the handler comes from the asset, not this library
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            **environment,
        }
        self._command = [sys.executable, "-m", "awslambdaric", handler]
        self._cwd = str(asset_dir)
        self._arn = ACCOUNT_ARN + function_name
        self._sink = stderr
        self.timeout_s = timeout_s
        #: Sums of the function's embedded metrics over all invocations so far.
        self.metrics: dict[str, float] = {}
        #: The same per target table, for functions with several targets.
        self.target_metrics: dict[str, dict[str, float]] = {}
        # Started now, so the cold start overlaps the caller's own set-up.
        self._sandbox: _Sandbox | None = self._start()

    @classmethod
    def for_function(
        cls,
        function: FunctionDef,
        table_names: dict[str, str],
        endpoint_url: str,
        **options: Any,
    ) -> SubprocessInvoker:
        """A synthesized function's invoker: its asset, handler, timeout, memory size and
        logging configuration, its environment with local table names, its DynamoDB
        client pointed at ``endpoint_url``."""
        environment = {
            **function.resolved_environment(table_names),
            **function.runtime_environment(),
            "AWS_ENDPOINT_URL_DYNAMODB": endpoint_url,
        }
        options.setdefault("function_name", function.logical_id)
        options.setdefault("timeout_s", function.timeout_s)
        return cls(function.asset_dir, function.handler, environment, **options)

    def invoke(self, event: Mapping[str, Any]) -> Any:
        """Send one event; return the handler's result or raise :class:`FunctionError`."""
        sandbox = self._sandbox or self._start()
        self._sandbox = sandbox
        self._take(sandbox.read(0))  # anything written between invocations
        request_id = sandbox.api.invoke(json.dumps(event).encode(), self.timeout_s)
        try:
            answer = self._wait(sandbox, request_id, time.monotonic())
        except BaseException:  # timed out, exited, or interrupted: this process is done
            self._take(self._discard())
            raise
        return self._result(answer)

    def _wait(self, sandbox: _Sandbox, request_id: str, submitted: float) -> Answer:
        """The answer to ``request_id``, reading the process's output meanwhile."""
        while True:
            answer = sandbox.api.answer()
            if answer is not None:
                self._take(sandbox.read(0))  # written before the answer: this invocation's
                return answer
            if sandbox.exited:
                self._take(self._discard())
                answer = sandbox.api.answer()  # an init error is posted before exiting
                if answer is not None:
                    return answer
                code = sandbox.process.returncode
                status = f"signal {-code}" if code < 0 else f"exit status {code}"
                raise FunctionError(
                    "Runtime.ExitError",
                    f"RequestId: {request_id} Error: Runtime exited with error: {status}",
                )
            left = self._time_left(sandbox, request_id, submitted)
            if left <= 0:
                message = f"Task timed out after {self.timeout_s:.2f} seconds"
                raise FunctionError("Sandbox.Timedout", f"RequestId: {request_id} Error: {message}")
            self._take(sandbox.read(left))

    def _time_left(self, sandbox: _Sandbox, request_id: str, submitted: float) -> float:
        deadline_ms = sandbox.api.deadline_ms(request_id)
        if deadline_ms is None:  # not taken yet: the runtime is still in init
            return submitted + INIT_TIMEOUT_S - time.monotonic()
        return deadline_ms / 1000 + GRACE_S - time.time()

    def _result(self, answer: Answer) -> Any:
        if answer.kind == "response":
            return answer.payload()
        if answer.kind == "init_error":  # the process exits: the next invocation inits again
            self._take(self._discard())
        raise FunctionError(answer.error_type, answer.error_message)

    def _start(self) -> _Sandbox:
        return _Sandbox(self._command, self._env, self._cwd, self._arn)

    def _discard(self) -> list[str]:
        """Stop the current process; the next invocation starts a fresh one."""
        sandbox, self._sandbox = self._sandbox, None
        return sandbox.stop() if sandbox else []

    def _take(self, lines: list[str]) -> None:
        """Count the EMF documents among ``lines``; forward every line to the log sink."""
        if not lines:
            return
        for line in lines:
            document = _emf(line)
            if document is None:
                continue
            table = document.get(TARGET_DIMENSION)
            sums = self.metrics if table is None else self.target_metrics.setdefault(table, {})
            for directive in document["_aws"].get("CloudWatchMetrics", []):
                for metric in directive.get("Metrics", []):
                    name = metric["Name"]
                    sums[name] = sums.get(name, 0) + float(document[name])
        self._forward("".join(line + "\n" for line in lines))

    def _forward(self, text: str) -> None:
        sink: Any = self._sink
        if sink == subprocess.DEVNULL:
            return
        if isinstance(sink, int):
            os.write(sink, text.encode())
            return
        sink = sink or sys.stderr
        sink.write(text if isinstance(sink, io.TextIOBase) else text.encode())
        sink.flush()

    def close(self) -> None:
        """Stop the process (Lambda's shutdown: no more invocations)."""
        self._take(self._discard())

    def __enter__(self) -> SubprocessInvoker:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _emf(line: str) -> dict[str, Any] | None:
    """The EMF document on ``line`` (a JSON object with an ``_aws`` object), if it is one."""
    if not line.startswith("{") or '"_aws"' not in line:
        return None
    try:
        document = json.loads(line)
    except ValueError:
        return None
    if isinstance(document, dict) and isinstance(document.get("_aws"), dict):
        return document
    return None
