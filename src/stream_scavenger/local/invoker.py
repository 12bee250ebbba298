"""Invoke a synthesized function's handler in a subprocess, as a warm container."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ..runtime.scavenger.config import TARGET_DIMENSION

if TYPE_CHECKING:
    from .assembly import FunctionDef


class FunctionError(RuntimeError):
    """The handler raised; Lambda would count the invocation as failed."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(f"{error_type}: {message}")
        self.error_type = error_type


class SubprocessInvoker:
    """One long-lived worker process per function, with the function's environment."""

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
        env = {
            "PATH": os.environ.get("PATH", ""),
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_LAMBDA_FUNCTION_NAME": function_name,
            "PYTHONDONTWRITEBYTECODE": "1",
            **environment,
        }
        self.timeout_s = timeout_s
        #: Sums of the function's embedded metrics over all invocations so far.
        self.metrics: dict[str, float] = {}
        #: The same per target table, for functions with several targets.
        self.target_metrics: dict[str, dict[str, float]] = {}
        self._process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "stream_scavenger.local.worker",
                str(asset_dir),
                handler,
                function_name,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=env,
            text=True,
            cwd=str(asset_dir),
        )

    @classmethod
    def for_function(
        cls,
        function: FunctionDef,
        table_names: dict[str, str],
        endpoint_url: str,
        **options: Any,
    ) -> SubprocessInvoker:
        """A synthesized function's worker: its asset, handler and timeout, its environment
        with local table names, its DynamoDB client pointed at ``endpoint_url``."""
        environment = {
            **function.resolved_environment(table_names),
            "AWS_ENDPOINT_URL_DYNAMODB": endpoint_url,
        }
        options.setdefault("function_name", function.logical_id)
        options.setdefault("timeout_s", function.timeout_s)
        return cls(function.asset_dir, function.handler, environment, **options)

    def invoke(self, event: Mapping[str, Any]) -> Any:
        """Send one event; return the handler's result or raise :class:`FunctionError`."""
        assert self._process.stdin and self._process.stdout
        self._process.stdin.write(
            json.dumps({"event": event, "timeout_ms": int(self.timeout_s * 1000)}) + "\n"
        )
        self._process.stdin.flush()
        line = self._process.stdout.readline()
        if not line:
            raise FunctionError("Runtime.ExitError", f"worker exited with {self._process.wait()}")
        reply = json.loads(line)
        for document in reply.get("metrics", []):
            table = document.get(TARGET_DIMENSION)
            sums = self.metrics if table is None else self.target_metrics.setdefault(table, {})
            for directive in document["_aws"]["CloudWatchMetrics"]:
                for metric in directive["Metrics"]:
                    name = metric["Name"]
                    sums[name] = sums.get(name, 0) + float(document[name])
        if "error" in reply:
            raise FunctionError(reply["error"]["type"], reply["error"]["message"])
        return reply["result"]

    def close(self) -> None:
        """Stop the worker."""
        if self._process.stdin:
            self._process.stdin.close()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()

    def __enter__(self) -> SubprocessInvoker:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
