"""Series "throttled target": a burst larger than one invocation can delete, against a table
provisioned far below it, replayed as Lambda replays it.

Per capacity, a fresh process (one warm container) runs the library's handler from the
example app's asset against DynamoDB Local behind a :class:`~testkit.proxy.LoopbackProxy`
with a :class:`~testkit.proxy.WriteCapacity` on the target (no banked capacity) and the run's
latency. The batch is invoked with a context of ``TIMEOUT_S``; while records are reported,
the batch is invoked again from the lowest reported sequence number (what Lambda replays),
at most ``retry_attempts`` more times (the template's). What is still reported after the
last one would reach the on-failure queue.

Reported per capacity: write units consumed per second while work remained against the
provisioned rate, throttled requests over all requests, write units spent on re-deletes
(items already gone) over all consumed, and the records sent to the on-failure queue against
what the capacity could not have absorbed in those invocations.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from testkit.events import make_batch
from testkit.proxy import LoopbackProxy, WriteCapacity

ROOT = Path(__file__).resolve().parent.parent
#: Write units per second of the three points.
CAPACITIES = (25, 100, 250)
#: The function timeout of this series: short, so that a burst within Lambda's largest stream
#: batch (10,000 records) still needs several invocations at every capacity.
TIMEOUT_S = 15.0
#: The burst, in seconds of the target's capacity: about 2.6 invocations' worth, so each point
#: runs ~40 s (at 250 units/s that is 9,000 records, below the 10,000 a batch can hold).
BURST_CAPACITY_S = 36
#: The function keeps this much of each invocation for its answer (handler ``RESERVE_S``).
RESERVE_S = 0.8
GOALS = {"utilization": 0.90, "throttled_share": 0.10, "redelete_share": 0.05}


def run_point(
    target: Any,
    units_per_s: int,
    retry_attempts: int,
    *,
    direct_url: str,
    latency_ms: float,
    seed: int,
) -> dict[str, Any]:
    """One capacity: a fresh table, a capacity proxy, the replays in a fresh process."""
    from benchmarks.suite import worker_env
    from benchmarks.worker import direct_client, fill

    records = units_per_s * BURST_CAPACITY_S
    batch = make_batch(records, False, seed=seed, tag=f"throttled-{units_per_s}")
    table = f"bench-throttled-{units_per_s}-{time.monotonic_ns()}"
    direct = direct_client(direct_url)
    direct.create_table(
        TableName=table,
        KeySchema=target.key_schema,
        AttributeDefinitions=target.attribute_definitions,
        BillingMode="PAY_PER_REQUEST",
    )
    try:
        fill(direct, table, batch.keys)
        capacity = {table: WriteCapacity(units_per_s, burst_s=300, banked_s=0)}
        # From here the bucket fills (CLOCK_MONOTONIC is the same in every process).
        filling_from = time.monotonic()
        with (
            LoopbackProxy(direct_url, capacity=capacity, latency_ms=latency_ms) as proxy,
            tempfile.TemporaryDirectory(prefix="bench-throttled-") as tmp,
        ):
            env = target.environment.resolved_environment({target.targets[0].logical_id: table})
            spec = {
                "asset_dir": str(target.asset_dir),
                "handler": target.handler,
                "env": env,
                "payload": batch.payload().decode(),
                "timeout_s": TIMEOUT_S,
                "invocations": 1 + retry_attempts,
                "result": str(Path(tmp) / "result.json"),
            }
            (Path(tmp) / "spec.json").write_text(json.dumps(spec))
            done = subprocess.run(
                [sys.executable, "-m", "benchmarks.throttled", str(Path(tmp) / "spec.json")],
                cwd=ROOT,
                env=worker_env(proxy.url),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                timeout=(1 + retry_attempts) * TIMEOUT_S + 120,
                check=False,
            )
            if done.returncode != 0:
                raise RuntimeError(f"throttled worker failed:\n{done.stderr.decode()[-3000:]}")
            replays: dict[str, Any] = json.loads(Path(spec["result"]).read_text())
            counts = proxy.counts()
        left = sum(
            int(p["Count"])
            for p in direct.get_paginator("scan").paginate(TableName=table, Select="COUNT")
        )
    finally:
        direct.delete_table(TableName=table)
    replays["accrued_s"] = replays["ended_at"] - filling_from
    return derive(units_per_s, records, retry_attempts, replays, counts, left)


def derive(
    units_per_s: int,
    records: int,
    retry_attempts: int,
    replays: dict[str, Any],
    counts: dict[str, dict[str, int]],
    keys_left: int,
) -> dict[str, Any]:
    """The four ratios of one point from the replays and the proxy's counts."""
    consumed = sum(counts["write_units"].values())
    absent = sum(counts["write_units_absent"].values())
    requests = counts["operations"].get("BatchWriteItem", 0)
    throttled = sum(counts["throttled_requests"].values())
    invocations = replays["invocations"]
    busy_s = sum(i["wall_s"] for i in invocations)
    usable_s = (1 + retry_attempts) * (TIMEOUT_S - RESERVE_S)
    # What the table could have taken in every invocation Lambda would make, from empty.
    unabsorbable = max(0, records - int(units_per_s * usable_s))
    return {
        "units_per_s": units_per_s,
        "records": records,
        "timeout_s": TIMEOUT_S,
        "retry_attempts": retry_attempts,
        "invocations": invocations,
        "busy_s": busy_s,
        "write_units": consumed,
        "write_units_absent": absent,
        "requests": requests,
        "throttled_requests": throttled,
        "throttled_deletes": sum(counts["throttled_deletes"].values()),
        # Against all the capacity the bucket took in, start-up of the container included.
        "accrued_s": replays["accrued_s"],
        "utilization": consumed / (units_per_s * replays["accrued_s"]),
        "utilization_busy": consumed / (units_per_s * busy_s) if busy_s else None,
        "throttled_share": throttled / requests if requests else None,
        "redelete_share": absent / consumed if consumed else None,
        "on_failure": replays["on_failure"],
        "unabsorbable": unabsorbable,
        "keys_left": keys_left,
    }


def verdicts(point: dict[str, Any]) -> dict[str, bool]:
    return {
        "utilization": point["utilization"] is not None
        and point["utilization"] >= GOALS["utilization"],
        "throttled_share": point["throttled_share"] is not None
        and point["throttled_share"] <= GOALS["throttled_share"],
        "redelete_share": point["redelete_share"] is not None
        and point["redelete_share"] <= GOALS["redelete_share"],
        "on_failure": point["on_failure"] <= point["unabsorbable"],
    }


def targets(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's four goals, each PASS or MISS over every capacity, with the numbers."""

    def line(name: str, text: str, fmt: Any) -> dict[str, Any]:
        ok = all(verdicts(p)[name] for p in points)
        return {
            "target": f"throttled target: {text}",
            "verdict": "PASS" if ok else "MISS",
            "measured": ", ".join(f"{p['units_per_s']} WCU: {fmt(p)}" for p in points),
        }

    return [
        line(
            "utilization",
            ">= 90 % of the provisioned write units/s consumed while work remains",
            lambda p: f"{p['utilization']:.1%}",
        ),
        line(
            "throttled_share",
            "throttled requests <= 10 % of all",
            lambda p: f"{p['throttled_requests']}/{p['requests']} ({p['throttled_share']:.1%})",
        ),
        line(
            "redelete_share",
            "write units on re-deletes <= 5 % of all consumed",
            lambda p: f"{p['write_units_absent']}/{p['write_units']} ({p['redelete_share']:.1%})",
        ),
        line(
            "on_failure",
            "no record on the on-failure queue that capacity could absorb",
            lambda p: f"{p['on_failure']} sent, {p['unabsorbable']} unabsorbable",
        ),
    ]


def measure(
    target: Any,
    retry_attempts: int,
    *,
    direct_url: str,
    latency_ms: float,
    seed: int,
    capacities: tuple[int, ...] = CAPACITIES,
    progress: Any = print,
) -> dict[str, Any]:
    points = []
    for units in capacities:
        progress(
            f"running throttled target, {units} write units/s, {units * BURST_CAPACITY_S} records"
        )
        point = run_point(
            target, units, retry_attempts, direct_url=direct_url, latency_ms=latency_ms, seed=seed
        )
        progress(
            f"  {len(point['invocations'])} invocations, {point['busy_s']:.1f} s, "
            f"{point['utilization']:.1%} of capacity, {point['on_failure']} to on-failure"
        )
        points.append(point)
    return {
        "timeout_s": TIMEOUT_S,
        "burst_capacity_s": BURST_CAPACITY_S,
        "retry_attempts": retry_attempts,
        "latency_ms": latency_ms,
        "points": points,
        "targets": targets(points),
    }


# -- the worker: one container, the batch and its replays ---------------------------------


def _replays(spec: dict[str, Any]) -> dict[str, Any]:
    import importlib
    import os

    from benchmarks.worker import LambdaContext

    os.environ.update(spec["env"])
    sys.path.insert(0, spec["asset_dir"])
    module_name, _, name = spec["handler"].rpartition(".")
    handler = getattr(importlib.import_module(module_name), name)
    records = json.loads(spec["payload"])["Records"]
    invocations = []
    on_failure = 0
    for n in range(spec["invocations"]):
        started = time.perf_counter()
        answer = handler({"Records": records}, LambdaContext(spec["timeout_s"]))
        wall = time.perf_counter() - started
        failures = {f["itemIdentifier"] for f in answer["batchItemFailures"]}
        invocations.append({"records": len(records), "reported": len(failures), "wall_s": wall})
        if not failures:
            break
        lowest = min(failures, key=int)
        records = [r for r in records if int(r["dynamodb"]["SequenceNumber"]) >= int(lowest)]
        if n == spec["invocations"] - 1:
            on_failure = len(records)  # retries exhausted: Lambda gives up on the rest
    return {"invocations": invocations, "on_failure": on_failure, "ended_at": time.monotonic()}


if __name__ == "__main__":
    spec_ = json.loads(Path(sys.argv[1]).read_text())
    Path(spec_["result"]).write_text(json.dumps(_replays(spec_)))
