"""A warm Lambda container in a subprocess: ``python -m stream_scavenger.local.worker``.

Imports the handler from the function's own asset directory (never from this
library), then answers one JSON line per invocation on stdin with one JSON
line on stdout: ``{"result": ...}`` or ``{"error": {"type", "message"}}``.
The function's logs go to stderr, as in Lambda.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
import uuid
from typing import Any


class _MetricsTee:
    """Stands in for stdout: forwards everything to stderr, keeps the EMF metric lines."""

    def __init__(self) -> None:
        self.documents: list[dict[str, Any]] = []
        self._partial = ""

    def write(self, text: str) -> int:
        sys.stderr.write(text)
        self._partial += text
        *lines, self._partial = self._partial.split("\n")
        for line in lines:
            if line.startswith('{"_aws"'):
                self.documents.append(json.loads(line))
        return len(text)

    def flush(self) -> None:
        sys.stderr.flush()


class LocalContext:
    """The parts of the Lambda context object a handler reads."""

    def __init__(self, function_name: str, timeout_ms: int) -> None:
        self.function_name = function_name
        self.aws_request_id = str(uuid.uuid4())
        self._deadline = time.monotonic() + timeout_ms / 1000.0

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the (simulated) timeout."""
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def main(argv: list[str]) -> int:
    """``worker ASSET_DIR MODULE.FUNCTION FUNCTION_NAME``."""
    asset_dir, handler_path, function_name = argv
    sys.path.insert(0, asset_dir)
    module_name, _, attr = handler_path.rpartition(".")
    handler = getattr(importlib.import_module(module_name), attr)
    out = sys.stdout
    tee = _MetricsTee()
    sys.stdout = tee  # the handler's prints must not corrupt the protocol
    for line in sys.stdin:
        request = json.loads(line)
        context = LocalContext(function_name, int(request["timeout_ms"]))
        reply: dict[str, Any]
        try:
            reply = {"result": handler(request["event"], context)}
        except Exception as err:  # noqa: BLE001 - reported to the caller, as Lambda does
            reply = {"error": {"type": type(err).__name__, "message": str(err)}}
        reply["metrics"], tee.documents = tee.documents, []
        out.write(json.dumps(reply) + "\n")
        out.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
