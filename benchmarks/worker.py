"""One series at one batch size, in a fresh process: ``python -m benchmarks.worker SPEC.json``.

A fresh process per measurement keeps each approach's imports, threads and memory apart, and
makes ``time.process_time()`` the handler's own CPU time (all its threads, request
serialization and response parsing included; the proxy and DynamoDB Local run in other
processes). The worker:

1. creates its own target table(s) as the template defines them (directly on DynamoDB
   Local): one, or one per target of a scavenger with several targets;
2. imports the handler (for this library: from the synthesized asset, with the function's
   environment) and warms it with one invocation on keys that are not in the tables, as a
   warm Lambda container would be;
3. per repetition: fills each table with the batch's keys as that table's ``key_mapping``
   names them (directly, not through the proxy), calls the handler once through the latency
   proxy, and records wall time, CPU time, the CPU time DynamoDB Local and the proxy used
   meanwhile (from ``/proc``), the proxy's request counts for that call, the handler's answer
   or exception, and how many keys are still in each table;
4. for this library only: the handler's CPU time and peak memory with botocore replaced by
   a stand-in that answers at once (the library's own share);
5. once more with ``tracemalloc`` on, for the peak memory the call allocates (kept out of
   the timed calls, whose speed tracemalloc would change);
6. deletes its tables and writes the results as JSON to ``SPEC["result"]``.
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import statistics
import sys
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks.stub import fresh
from testkit.events import make_batch, target_key
from testkit.proxy import difference, read_counts

HANDLERS = {
    "per_record": "benchmarks.alternatives.per_record.handler",
    "article": "benchmarks.alternatives.article.handler",
}


class LambdaContext:
    """The part of Lambda's context the handlers use: the time left of ``timeout_s``."""

    function_name = "benchmark"
    memory_limit_in_mb = 256
    aws_request_id = "00000000-0000-0000-0000-000000000000"

    def __init__(self, timeout_s: float) -> None:
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def load_handler(spec: dict[str, Any]) -> Any:
    """The approach's ``handler(event, context)``; this library's comes from the asset."""
    os.environ.update(spec["env"])
    if spec["approach"] in HANDLERS:
        dotted = HANDLERS[spec["approach"]]
    else:  # this library, from the asset: one target, two targets, or one of two scavengers
        sys.path.insert(0, spec["asset_dir"])
        dotted = spec["handler"]
    module_name, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module_name), name)


def direct_client(endpoint_url: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "dynamodb",
        endpoint_url=endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
        config=Config(max_pool_connections=8, retries={"total_max_attempts": 3}),
    )


def fill(client: Any, table: str, keys: list[dict[str, Any]]) -> None:
    """Put every key into ``table``, 25 per request, a few requests at a time."""

    def put(start: int) -> None:
        request = [{"PutRequest": {"Item": key}} for key in keys[start : start + 25]]
        answer = client.batch_write_item(RequestItems={table: request})
        if answer.get("UnprocessedItems"):
            raise RuntimeError("DynamoDB Local left items unprocessed while filling")

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(put, range(0, len(keys), 25)))


def items_left(client: Any, table: str) -> int:
    count = 0
    for page in client.get_paginator("scan").paginate(TableName=table, Select="COUNT"):
        count += int(page["Count"])
    return count


def invoke(handler: Any, event: Any, timeout_s: float) -> tuple[Any, str | None]:
    """Call the handler; its answer, or the exception it raised as ``"Type: message"``.

    ``event`` is parsed from the payload before, outside what is measured, as Lambda's
    runtime parses it before it calls the handler.
    """
    try:
        return handler(event, LambdaContext(timeout_s)), None
    except Exception as exc:  # noqa: BLE001 - a failing approach is a result, not a crash
        return None, f"{type(exc).__name__}: {exc}"


def process_cpu_s(pid: int | None) -> float | None:
    """CPU seconds (user + system) another process has used so far; None where unknown."""
    if not pid:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _spent(after: float | None, before: float | None) -> float | None:
    return None if after is None or before is None else after - before


class InstantClient:
    """A DynamoDB client stand-in that confirms every request at once, without any I/O."""

    def batch_write_item(self, **kwargs: Any) -> dict[str, Any]:
        return {"UnprocessedItems": {}}


def own_share(handler: Any, payload: bytes, repeat: int) -> dict[str, Any]:
    """This library's handler with botocore replaced by :class:`InstantClient`.

    The same module's ``Scavenger`` with the function's own configuration: the CPU time
    (median of ``repeat`` calls) and peak memory of the library's own code, without
    botocore's serialization, signing, HTTP and parsing.
    """
    module = sys.modules.get(handler.__module__)
    scavenger_type = getattr(module, "Scavenger", None)
    config_type = getattr(module, "ScavengerConfig", None)
    if scavenger_type is None or config_type is None:
        return {"own_cpu_s": None, "own_peak_bytes": None}
    scavenger = scavenger_type(config_type.from_env(os.environ), InstantClient())
    samples = []
    for call in range(repeat + 1):
        event = fresh(json.loads(payload), 100 + call)
        gc.collect()
        started = time.process_time()
        scavenger.handle(event, LambdaContext(60))
        samples.append(time.process_time() - started)
    event = fresh(json.loads(payload), 200)
    gc.collect()
    tracemalloc.start()
    try:
        scavenger.handle(event, LambdaContext(60))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return {"own_cpu_s": statistics.median(samples[1:]), "own_peak_bytes": peak}


def answer_summary(answer: Any) -> dict[str, Any]:
    if isinstance(answer, dict) and "batchItemFailures" in answer:
        return {"reported": len(answer["batchItemFailures"])}
    return {}


def run(spec: dict[str, Any]) -> dict[str, Any]:
    client = direct_client(spec["direct_url"])
    tables: list[dict[str, Any]] = spec["tables"]
    batch = make_batch(spec["records"], spec["duplicates"], seed=spec["seed"])
    # The items each table holds before a call: the batch's keys as that table names them.
    items = {t["name"]: [target_key(key, t["key_mapping"]) for key in batch.keys] for t in tables}
    payload = batch.payload()
    timeout_s = float(spec["timeout_s"])
    created: list[str] = []
    try:
        for t in tables:
            client.create_table(
                TableName=t["name"],
                KeySchema=t["key_schema"],
                AttributeDefinitions=t["attribute_definitions"],
                BillingMode="PAY_PER_REQUEST",
            )
            created.append(t["name"])

        def refill() -> None:
            for name, keys in items.items():
                fill(client, name, keys)

        handler = load_handler(spec)
        warm = make_batch(spec["warmup_records"], False, seed=spec["seed"], tag="warm-up")
        _, warm_error = invoke(handler, json.loads(warm.payload()), timeout_s)
        if warm_error:
            raise RuntimeError(f"warm-up invocation failed: {warm_error}")

        reps = []
        filled: dict[str, int] = {}
        for call in range(spec["repeat"]):
            refill()
            if not filled:  # once: each table holds exactly the keys the batch names there
                filled = {t["label"]: items_left(client, t["name"]) for t in tables}
                if set(filled.values()) != {batch.distinct}:
                    raise RuntimeError(f"tables hold {filled} items, not {batch.distinct} each")
            # New event IDs per call: the container remembers confirmed records, and
            # would acknowledge a replay of the same ones without a request.
            event = fresh(json.loads(payload), call)
            gc.collect()
            before = read_counts(spec["proxy_url"])
            server0, proxy0 = process_cpu_s(spec["server_pid"]), process_cpu_s(spec["proxy_pid"])
            started, cpu_started = time.perf_counter(), time.process_time()
            answer, error = invoke(handler, event, timeout_s)
            wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
            server1, proxy1 = process_cpu_s(spec["server_pid"]), process_cpu_s(spec["proxy_pid"])
            seen = difference(read_counts(spec["proxy_url"]), before)
            left = {t["label"]: items_left(client, t["name"]) for t in tables}
            reps.append(
                {
                    "wall_s": wall,
                    "cpu_s": cpu,
                    "server_cpu_s": _spent(server1, server0),
                    "proxy_cpu_s": _spent(proxy1, proxy0),
                    "requests": sum(seen["operations"].values()),
                    "proxy": seen,
                    "error": error,
                    "keys_left": sum(left.values()),
                    "keys_left_by_table": left,
                    **answer_summary(answer),
                }
            )
            # The next fill puts every key again: the tables then hold exactly the batch's keys.

        own = {"own_cpu_s": None, "own_peak_bytes": None}
        if spec["approach"] not in HANDLERS:
            own = own_share(handler, payload, len(reps))

        peak = None
        if spec["measure_memory"]:
            refill()
            event = fresh(json.loads(payload), 300)
            gc.collect()
            tracemalloc.start()
            try:
                invoke(handler, event, timeout_s)
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
    finally:
        for name in created:
            client.delete_table(TableName=name)

    def median(name: str) -> float | None:
        values = [r[name] for r in reps if r[name] is not None]
        return statistics.median(values) if values else None

    return {
        "approach": spec["approach"],
        "records": batch.records,
        "duplicates": spec["duplicates"],
        "distinct_keys": batch.distinct,
        "tables": [t["label"] for t in tables],
        "keys_filled_by_table": filled,
        "event_bytes": len(payload),
        "repeat": len(reps),
        "wall_s": median("wall_s"),
        "cpu_s": median("cpu_s"),
        "server_cpu_s": median("server_cpu_s"),
        "proxy_cpu_s": median("proxy_cpu_s"),
        **own,
        "peak_bytes": peak,
        "reps": reps,
    }


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[1]).read_text())
    result = run(spec)
    Path(spec["result"]).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
