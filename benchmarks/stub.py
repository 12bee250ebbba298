"""The handler's CPU per record against a no-latency stub: botocore's whole request path
(serialization, signing, HTTP, parsing) without DynamoDB Local or the proxy sharing the CPU.

The stub answers every ``BatchWriteItem`` at once with ``{"UnprocessedItems": {}}`` and its
``x-amz-crc32``; it runs in the calling process, the handler in a fresh
``python -m benchmarks.stub SPEC.json`` process, so ``time.process_time()`` there is the
handler's own CPU time. After each call the same requests go out again with the handler's own
client, one after the other and nothing else: the SDK's share, the floor under the handler;
and the handler runs with one request in flight too, which shows what threads contending for
the GIL cost when every answer comes back at once (with a few milliseconds of latency, as
from DynamoDB, they wait on the network instead). Each call gets records the container has
not seen (fresh event IDs), so none is acknowledged from its memory of confirmed deletes.
"""

from __future__ import annotations

import json
import os
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
    import dataclasses
    import gc
    import importlib

    from benchmarks.worker import LambdaContext

    os.environ.update(spec["env"])
    sys.path.insert(0, spec["asset_dir"])
    module_name, _, name = spec["handler"].rpartition(".")
    module = importlib.import_module(module_name)
    handler = getattr(module, name)
    # The same handler with one request in flight: without threads contending for the GIL.
    config = module.ScavengerConfig.from_env(os.environ)
    single = module.Scavenger(
        dataclasses.replace(config, max_concurrency=1), module.make_client(config)
    ).handle
    warm = make_batch(200, False, seed=spec["seed"], tag="warm-up").payload()
    for call in (handler, single):
        call(json.loads(warm), LambdaContext(60))
    payload = make_batch(spec["records"], False, seed=spec["seed"], tag="stub").payload()
    sdk_call = _sdk_only(module, config, json.loads(payload))
    cpu: list[float] = []
    wall: list[float] = []
    one: list[float] = []
    sdk: list[float] = []
    for call in range(spec["repeat"]):
        for samples, invoke in ((cpu, handler), (one, single)):
            event = fresh(json.loads(payload), 2 * call + (samples is one))
            gc.collect()
            started, cpu_started = time.perf_counter(), time.process_time()
            answer = invoke(event, LambdaContext(60))
            if samples is cpu:
                wall.append(time.perf_counter() - started)
            samples.append(time.process_time() - cpu_started)
            if answer != {"batchItemFailures": []}:
                raise RuntimeError(f"the stub confirms everything, yet: {str(answer)[:200]}")
        gc.collect()
        cpu_started = time.process_time()
        sdk_call()
        sdk.append(time.process_time() - cpu_started)
    records = spec["records"]
    return {
        "records": records,
        "repeat": spec["repeat"],
        "cpu_us_per_record": statistics.median(cpu) / records * 1e6,
        "one_in_flight_cpu_us_per_record": statistics.median(one) / records * 1e6,
        "sdk_cpu_us_per_record": statistics.median(sdk) / records * 1e6,
        "wall_s": statistics.median(wall),
        "cpu_samples_s": cpu,
        "one_in_flight_cpu_samples_s": one,
        "sdk_cpu_samples_s": sdk,
        "wall_samples_s": wall,
    }


def _sdk_only(module: Any, scavenger: Any, event: dict[str, Any]) -> Any:
    """The same ``BatchWriteItem`` requests with the handler's own client, sent one after the
    other and nothing else: what botocore alone costs, the floor under the handler's CPU."""
    client = module.make_client(scavenger)
    (table,) = {t.table for t in scavenger.targets}
    keys = [record["dynamodb"]["Keys"] for record in event["Records"]]
    requests = [
        {table: [{"DeleteRequest": {"Key": key}} for key in keys[start : start + 25]]}
        for start in range(0, len(keys), 25)
    ]

    def send_all() -> None:
        for items in requests:
            client.batch_write_item(RequestItems=items, ReturnConsumedCapacity="TOTAL")

    send_all()  # warm, as the handler was
    return send_all


if __name__ == "__main__":
    spec_ = json.loads(Path(sys.argv[1]).read_text())
    Path(spec_["result"]).write_text(json.dumps(_run(spec_)))
