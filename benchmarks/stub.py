"""The handler's CPU per record against a no-latency stub: botocore's whole request path
(serialization, signing, HTTP, parsing) without DynamoDB Local or the proxy sharing the CPU.

The stub answers every ``BatchWriteItem`` at once with ``{"UnprocessedItems": {}}`` and its
``x-amz-crc32``; it runs in the calling process, the handler in a fresh
``python -m benchmarks.stub SPEC.json`` process, so ``time.process_time()`` there is the
handler's own CPU time. Each call gets records the container has not seen (fresh event IDs),
so none is acknowledged from the container's memory of confirmed deletes.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

from testkit.events import make_batch

ROOT = Path(__file__).resolve().parent.parent
ANSWER = b'{"UnprocessedItems":{}}'


class _Answer(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as DynamoDB
    disable_nagle_algorithm = True  # else the body waits for the client's delayed ACK

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.requests += 1  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "application/x-amz-json-1.0")
        self.send_header("Content-Length", str(len(ANSWER)))
        self.send_header("x-amz-crc32", str(zlib.crc32(ANSWER) & 0xFFFFFFFF))
        self.end_headers()
        self.wfile.write(ANSWER)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


class Stub:
    """``with Stub() as stub: ... stub.url ...``: answers every request at once, on loopback."""

    def __init__(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Answer)
        self._server.daemon_threads = True
        self._server.requests = 0  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def requests(self) -> int:
        return int(self._server.requests)  # type: ignore[attr-defined]

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def fresh(event: dict[str, Any], call: int) -> dict[str, Any]:
    """``event`` with event IDs no earlier call used: a new batch to the container."""
    for record in event["Records"]:
        record["eventID"] = f"{call:04d}{record['eventID'][4:]}"
    return event


def measure(
    asset_dir: Path, handler: str, env: dict[str, str], records: int, repeat: int, seed: int
) -> dict[str, Any]:
    """Median handler CPU and wall time per call of ``records`` records, in a fresh process."""
    from benchmarks.suite import worker_env

    with Stub() as stub, tempfile.TemporaryDirectory(prefix="bench-stub-") as tmp:
        spec: dict[str, Any] = {
            "asset_dir": str(asset_dir),
            "handler": handler,
            "env": env,
            "records": records,
            "repeat": repeat,
            "seed": seed,
            "result": str(Path(tmp) / "result.json"),
        }
        (Path(tmp) / "spec.json").write_text(json.dumps(spec))
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.stub", str(Path(tmp) / "spec.json")],
            cwd=ROOT,
            env=worker_env(stub.url),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=600,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"stub worker failed:\n{done.stderr.decode()[-3000:]}")
        result: dict[str, Any] = json.loads(Path(spec["result"]).read_text())
        result["stub_requests"] = stub.requests
        return result


def _run(spec: dict[str, Any]) -> dict[str, Any]:
    import gc
    import importlib
    import os

    from benchmarks.worker import LambdaContext

    os.environ.update(spec["env"])
    sys.path.insert(0, spec["asset_dir"])
    module_name, _, name = spec["handler"].rpartition(".")
    handler = getattr(importlib.import_module(module_name), name)
    warm = make_batch(200, False, seed=spec["seed"], tag="warm-up").payload()
    handler(json.loads(warm), LambdaContext(60))
    payload = make_batch(spec["records"], False, seed=spec["seed"], tag="stub").payload()
    cpu, wall = [], []
    for call in range(spec["repeat"]):
        event = fresh(json.loads(payload), call)
        gc.collect()
        started, cpu_started = time.perf_counter(), time.process_time()
        answer = handler(event, LambdaContext(60))
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - cpu_started)
        if answer != {"batchItemFailures": []}:
            raise RuntimeError(f"the stub confirms everything, yet: {str(answer)[:200]}")
    records = spec["records"]
    return {
        "records": records,
        "repeat": spec["repeat"],
        "cpu_us_per_record": statistics.median(cpu) / records * 1e6,
        "wall_s": statistics.median(wall),
        "cpu_samples_s": cpu,
        "wall_samples_s": wall,
    }


if __name__ == "__main__":
    spec_ = json.loads(Path(sys.argv[1]).read_text())
    Path(spec_["result"]).write_text(json.dumps(_run(spec_)))
