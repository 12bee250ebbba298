"""The benchmark run: synthesize, start the proxy, measure every series, derive the rest.

Series:

``library``
    The handler of the synthesized asset of ``examples/app.py``, default settings
    (8 requests in flight, chunks of 25).
``per_record``
    Powertools' ``BatchProcessor`` for DynamoDB streams, ``DeleteItem`` per record,
    one record after the other (``benchmarks.alternatives.per_record``).
``article``
    The article's approach in Python: chunks of 25 without de-duplication, all sent at once,
    unprocessed items not retried (``benchmarks.alternatives.article``).
``limit``
    Not run: ceil(distinct keys / 25) requests at the library's concurrency, each taking
    the median latency of one 25-key ``BatchWriteItem`` measured through the same proxy in
    the same run.

Two targets (staging with the messages' key, and a single-table design keyed by templates),
from ``benchmarks/two_targets_app.py``, on the same batches:

``two_targets``
    This library with both targets in one scavenger: the handler of that app's asset and
    function environment; the deletes of both tables share the ``BatchWriteItem`` requests.
``two_single``
    What users would otherwise deploy: two single-target scavengers on the same stream. The
    library's single-target handler runs once per table on the same batch (each in its own
    process, as two Lambda functions); requests, wall time and CPU are summed.
``limit_two_targets``
    Not run: ceil(2 x distinct keys / 25) requests, as ``limit``.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import coldstart, stub, throttled
from testkit.events import distinct_keys, make_batch
from testkit.proxy import LatencyProxy

ROOT = Path(__file__).resolve().parent.parent
APPROACHES = ("library", "per_record", "article")
#: The two-target series: one scavenger with both targets, and two single-target ones.
TWO_TARGET_APPROACHES = ("two_targets", "two_single")
LABELS = {
    "library": "this library",
    "per_record": "per-record (Powertools)",
    "article": "article's approach",
    "limit": "limit",
    "two_targets": "this library, two targets",
    "two_single": "two single-target scavengers",
    "limit_two_targets": "limit, two targets",
}
ORDER = (*APPROACHES, "limit", *TWO_TARGET_APPROACHES, "limit_two_targets")
CHUNK = 25
#: Per-record deletes are repeated while repeat * records stays within this many records.
PER_RECORD_BUDGET = 1000
#: Warm-up invocations: enough distinct absent keys to open each approach's connections.
WARMUP_RECORDS = {
    "library": 200,
    "per_record": 25,
    "article": 1250,
    "two_targets": 200,
    "two_single": 200,
}
TWO_TARGETS_APP = ROOT / "benchmarks" / "two_targets_app.py"
#: Stacks of ``TWO_TARGETS_APP``.
TWO_TARGETS_STACK = "StreamScavengerBenchTwoTargets"
TWO_SCAVENGERS_STACK = "StreamScavengerBenchTwoScavengers"
MB_PER_GB = 1024
#: Lambda gives a function the CPU of one vCPU at 1,769 MB, proportionally less below.
LAMBDA_MB_PER_VCPU = 1769

Progress = Callable[[str], None]


@dataclass
class Settings:
    latency_ms: float = 5.0
    sizes: tuple[int, ...] = (100, 1000, 10000)
    repeat: int = 5
    import_rounds: int = 11
    probe_samples: int = 31
    #: Rounds of 100 requests of each kind sent to warm DynamoDB Local up before measuring.
    warmup_rounds: int = 3
    memory_mb: int = 256
    seed: int = 7
    #: Per-record runs above this many records are not run (None: no cap).
    per_record_max: int | None = None
    #: Per-record memory runs (tracemalloc, one more full pass) up to this many records.
    per_record_memory_max: int | None = 1000
    cold_import: bool = True
    #: Run the two-target series (one scavenger with two targets, two single-target ones).
    two_targets: bool = True
    #: Run the "throttled target" series (``benchmarks.throttled``; adds about 2.5 min).
    throttled: bool = True
    throttled_capacities: tuple[int, ...] = (25, 100, 250)
    #: Calls of 1,000 records against the no-latency stub (``benchmarks.stub``).
    stub_repeat: int = 7
    timeout_s: float = 60.0
    concurrency: int = 8
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class TargetTable:
    """One table a scavenger deletes from, as synthesized."""

    #: A short name for tables and reports: the logical ID without its hash, lowercase.
    label: str
    logical_id: str
    key_schema: list[dict[str, str]]
    attribute_definitions: list[dict[str, str]]
    #: Target key attribute -> source attribute or key template (from ``SCAVENGER_CONFIG``).
    key_mapping: dict[str, str]


@dataclass(frozen=True)
class Target:
    """A scavenger function as synthesized (the example app's, or a two-target app's)."""

    asset_dir: Path
    handler: str
    environment: Any  # FunctionDef, kept for resolved_environment
    targets: tuple[TargetTable, ...]
    timeout_s: int
    concurrency: int
    chunk: int
    #: The event source mapping's ``MaximumRetryAttempts`` (the construct's default if absent).
    retry_attempts: int = 10

    @property
    def key_schema(self) -> list[dict[str, str]]:
        """The first target's key schema (the table the other series delete from)."""
        return self.targets[0].key_schema

    @property
    def attribute_definitions(self) -> list[dict[str, str]]:
        return self.targets[0].attribute_definitions


@dataclass(frozen=True)
class TwoTargets:
    """The two-target app: one scavenger with both targets, and one scavenger per table."""

    both: Target
    singles: tuple[Target, ...]


def _synth(app: Path, out: Path) -> list[Any]:
    """``CDK_OUTDIR=out python app`` and the stacks of the assembly that hold a scavenger."""
    from stream_scavenger.local.assembly import load_assembly

    subprocess.run(
        [sys.executable, str(app)],
        env={**os.environ, "CDK_OUTDIR": str(out)},
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=600,
    )
    return load_assembly(out)


def function_target(stack: Any, function: Any) -> Target:
    """A scavenger function of a loaded stack, its target tables read from its environment
    (``SCAVENGER_TARGET_TABLE``, ``SCAVENGER_TARGET_TABLE_1``, ... and ``SCAVENGER_CONFIG``
    version 1 or 2, the contract of ``runtime/scavenger/config.py``)."""
    from stream_scavenger.local.event_source_mapping import table_names_for
    from stream_scavenger.runtime.scavenger.config import ScavengerConfig

    # Local table names are the logical IDs, so each target's table is its logical ID.
    config = ScavengerConfig.from_env(function.resolved_environment(table_names_for(stack.tables)))
    targets = []
    for target in config.targets:
        props = stack.tables[target.table].properties
        targets.append(
            TargetTable(
                label=_label(target.table),
                logical_id=target.table,
                key_schema=props["KeySchema"],
                attribute_definitions=props["AttributeDefinitions"],
                key_mapping=dict(target.key_mapping),
            )
        )
    return Target(
        asset_dir=function.asset_dir,
        handler=function.handler,
        environment=function,
        targets=tuple(targets),
        timeout_s=function.timeout_s,
        concurrency=config.max_concurrency,
        chunk=CHUNK,
        retry_attempts=int(
            (function.mapping.properties if function.mapping else {}).get(
                "MaximumRetryAttempts", 10
            )
        ),
    )


def _label(logical_id: str) -> str:
    """``Staging12D1754E`` -> ``staging``: CDK appends 8 hex digits to a logical ID."""
    name, suffix = logical_id[:-8], logical_id[-8:]
    hashed = len(logical_id) > 8 and all(c in "0123456789ABCDEF" for c in suffix)
    return (name if hashed else logical_id).lower()


def synthesize(out: Path) -> Target:
    """``CDK_OUTDIR=out python examples/app.py`` and the scavenger it defines."""
    (stack,) = _synth(ROOT / "examples" / "app.py", out)
    (function,) = stack.functions
    return function_target(stack, function)


def synthesize_two_targets(out: Path) -> TwoTargets:
    """``CDK_OUTDIR=out python benchmarks/two_targets_app.py``: the scavenger with two
    targets, and the two single-target scavengers (staging first, then design)."""
    stacks = {stack.name: stack for stack in _synth(TWO_TARGETS_APP, out)}
    one = stacks[TWO_TARGETS_STACK]
    (function,) = one.functions
    both = function_target(one, function)
    two = stacks[TWO_SCAVENGERS_STACK]
    singles = {t.targets[0].label: t for t in (function_target(two, f) for f in two.functions)}
    labels = [t.label for t in both.targets]
    if len(both.targets) != 2 or sorted(singles) != sorted(labels):
        raise RuntimeError(f"{TWO_TARGETS_APP.name}: expected two targets, got {labels}")
    return TwoTargets(both=both, singles=tuple(singles[label] for label in labels))


def synthesize_all(out: Path) -> tuple[Target, TwoTargets]:
    """Both apps, synthesized at the same time (each is a subprocess): the example app's
    scavenger and the two-target app's, in ``out/example`` and ``out/two-targets``."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        example = pool.submit(synthesize, out / "example")
        two = pool.submit(synthesize_two_targets, out / "two-targets")
        return example.result(), two.result()


def worker_env(proxy_url: str) -> dict[str, str]:
    """AWS settings of every worker: dummy credentials, DynamoDB at the proxy, nothing else."""
    return coldstart.sample_env(
        {
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_ENDPOINT_URL_DYNAMODB": proxy_url,
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
        }
    )


_tables = itertools.count()


def run_worker(
    target: Target,
    approach: str,
    records: int,
    duplicates: bool,
    *,
    direct_url: str,
    proxy_url: str,
    repeat: int,
    measure_memory: bool,
    seed: int,
    timeout_s: float,
    server_pid: int | None = None,
) -> dict[str, Any]:
    """One measurement in a fresh ``python -m benchmarks.worker`` process."""
    prefix = f"bench-{os.getpid()}-{next(_tables):03d}-{approach}-{records}"
    tables = [
        {
            "label": t.label,
            "name": f"{prefix}-{t.label}",
            "key_schema": t.key_schema,
            "attribute_definitions": t.attribute_definitions,
            "key_mapping": t.key_mapping,
        }
        for t in target.targets
    ]
    if approach in ("per_record", "article"):
        tables = tables[:1]
        env = {"TARGET_TABLE": tables[0]["name"]}
    else:  # the handler of the synthesized asset, with its own environment
        env = target.environment.resolved_environment(
            {t.logical_id: table["name"] for t, table in zip(target.targets, tables, strict=True)}
        )
    with tempfile.TemporaryDirectory(prefix="bench-worker-") as tmp:
        spec: dict[str, Any] = {
            "approach": approach,
            "records": records,
            "duplicates": duplicates,
            "seed": seed,
            "repeat": repeat,
            "measure_memory": measure_memory,
            "warmup_records": WARMUP_RECORDS[approach],
            "tables": tables,
            "direct_url": direct_url,
            "proxy_url": proxy_url,
            "asset_dir": str(target.asset_dir),
            "handler": target.handler,
            "env": env,
            "timeout_s": timeout_s,
            "server_pid": server_pid,
            "proxy_pid": os.getpid(),  # the proxy runs in this process
            "result": str(Path(tmp) / "result.json"),
        }
        spec_path = Path(tmp) / "spec.json"
        spec_path.write_text(json.dumps(spec))
        stderr_path = Path(tmp) / "stderr.txt"
        with stderr_path.open("wb") as stderr:
            done = subprocess.run(
                [sys.executable, "-m", "benchmarks.worker", str(spec_path)],
                cwd=ROOT,
                env=worker_env(proxy_url),
                stdout=subprocess.DEVNULL,  # the handlers' metric lines
                stderr=stderr,
                timeout=3600,
                check=False,
            )
        if done.returncode != 0:
            tail = stderr_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"benchmark worker {approach}/{records} failed:\n{tail}")
        result: dict[str, Any] = json.loads(Path(spec["result"]).read_text())
        return result


def probe(
    direct: Any, proxy_url: str, target: Target, samples: int, seed: int, tag: str
) -> dict[str, list[float]]:
    """Sequential single requests through the proxy: 25-key BatchWriteItem and DeleteItem."""
    from benchmarks.worker import direct_client, fill

    client = direct_client(proxy_url)
    table = f"bench-{os.getpid()}-probe-{tag}"
    direct.create_table(
        TableName=table,
        KeySchema=target.key_schema,
        AttributeDefinitions=target.attribute_definitions,
        BillingMode="PAY_PER_REQUEST",
    )
    warm = 3
    try:
        batch = make_batch((samples + warm) * CHUNK, False, seed=seed, tag=f"probe-{tag}")
        fill(direct, table, batch.keys)
        bwi: list[float] = []
        for n in range(samples + warm):
            chunk = batch.keys[n * CHUNK : (n + 1) * CHUNK]
            started = time.perf_counter()
            answer = client.batch_write_item(
                RequestItems={table: [{"DeleteRequest": {"Key": k}} for k in chunk]}
            )
            elapsed = time.perf_counter() - started
            assert not answer.get("UnprocessedItems")
            if n >= warm:
                bwi.append(elapsed)
        single = batch.keys[: samples + warm]
        fill(direct, table, single)
        one: list[float] = []
        for n, key in enumerate(single):
            started = time.perf_counter()
            client.delete_item(TableName=table, Key=key)
            if n >= warm:
                one.append(time.perf_counter() - started)
    finally:
        direct.delete_table(TableName=table)
    return {"batch_write_25_s": bwi, "delete_item_s": one}


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": model or platform.processor(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def run(settings: Settings, progress: Progress = print) -> dict[str, Any]:
    """Everything, in one run; returns the results (see ``report`` for the table)."""
    from stream_scavenger.local.dynamodb_local import DynamoDBLocal

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-synth-") as synth:
        two: TwoTargets | None = None
        if settings.two_targets:
            progress(f"synthesizing examples/app.py and {TWO_TARGETS_APP.relative_to(ROOT)}")
            target, two = synthesize_all(Path(synth))
        else:
            progress("synthesizing examples/app.py")
            target = synthesize(Path(synth) / "cdk.out")
        settings.concurrency = target.concurrency
        progress(f"starting DynamoDB Local; proxy latency {settings.latency_ms:g} ms")
        with (
            DynamoDBLocal() as local,
            LatencyProxy(local.endpoint_url, settings.latency_ms, max_seconds=3 * 3600) as proxy,
        ):
            server_pid = local.pid
            results = measure(
                settings, target, local.endpoint_url, proxy.url, progress, server_pid, two=two
            )
            results["proxy_totals"] = proxy.counts()
    results["elapsed_s"] = time.monotonic() - started
    return results


def measure(
    settings: Settings,
    target: Target,
    direct_url: str,
    proxy_url: str,
    progress: Progress,
    server_pid: int | None = None,
    *,
    two: TwoTargets | None = None,
) -> dict[str, Any]:
    """All measurements against a running DynamoDB Local and proxy; with ``two``, also the
    two-target series, on the same batches, interleaved with the others at each size."""
    from benchmarks.worker import direct_client

    direct = direct_client(direct_url)
    load_start = os.getloadavg()
    progress("warming DynamoDB Local up (its JIT compiles while it serves the first requests)")
    for n in range(settings.warmup_rounds):
        probe(direct, proxy_url, target, 100, settings.seed, f"warm-up-{n}")
    probes = [probe(direct, proxy_url, target, settings.probe_samples, settings.seed, "start")]
    progress(
        f"latency probe: {_ms(statistics.median(probes[0]['batch_write_25_s']))} per 25-key "
        "BatchWriteItem"
    )

    runs: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    # What every measurement shares: the endpoints, the seed and DynamoDB Local's process.
    worker = functools.partial(
        run_worker,
        direct_url=direct_url,
        proxy_url=proxy_url,
        seed=settings.seed,
        server_pid=server_pid,
    )
    for records in settings.sizes:
        for duplicates in (False, True):
            for approach in APPROACHES:
                label = f"{LABELS[approach]}, {records} records, duplicates={duplicates}"
                dup_note = " with duplicate keys" if duplicates else ""
                if (
                    approach == "per_record"
                    and settings.per_record_max is not None
                    and records > settings.per_record_max
                ):
                    skipped.append(
                        {
                            "approach": approach,
                            "records": records,
                            "duplicates": duplicates,
                            "reason": f"per-record runs capped at "
                            f"{settings.per_record_max} records",
                        }
                    )
                    progress(f"skipped {label} (cap)")
                    continue
                repeat = min(settings.repeat, max(3, 20_000 // records))
                memory = True
                if approach == "per_record":
                    repeat = max(1, min(settings.repeat, PER_RECORD_BUDGET // records))
                    cap = settings.per_record_memory_max
                    memory = cap is None or records <= cap
                progress(f"running {label} (x{repeat}{', +memory' if memory else ''})")
                result = worker(
                    target,
                    approach,
                    records,
                    duplicates,
                    repeat=repeat,
                    measure_memory=memory,
                    timeout_s=target.timeout_s,
                )
                if not memory:
                    settings.notes.append(
                        f"{LABELS[approach]}, {records} records{dup_note}: peak memory not "
                        f"measured (per-record memory runs up to {settings.per_record_memory_max} "
                        "records; --per-record-memory-max raises it)"
                    )
                runs.append(result)
                _report_run(progress, result)
            if two is None:
                continue
            repeat = min(settings.repeat, max(3, 20_000 // records))
            for approach in TWO_TARGET_APPROACHES:
                label = f"{LABELS[approach]}, {records} records, duplicates={duplicates}"
                progress(f"running {label} (x{repeat}, +memory)")
                functions = (two.both,) if approach == "two_targets" else two.singles
                parts = [
                    worker(
                        function,
                        approach,
                        records,
                        duplicates,
                        repeat=repeat,
                        measure_memory=True,
                        timeout_s=function.timeout_s,
                    )
                    for function in functions
                ]
                result = parts[0] if approach == "two_targets" else combine_parts(parts)
                runs.append(result)
                _report_run(progress, result)

    for run in runs:
        for part in run.get("parts") or [run]:
            if part["wall_s"] > target.timeout_s:
                of = f" ({part['tables'][0]})" if run.get("parts") else ""
                settings.notes.append(
                    f"{LABELS[run['approach']]}{of}, {run['records']} records"
                    f"{' with duplicate keys' if run['duplicates'] else ''}: "
                    f"{part['wall_s']:.0f} s, longer than the construct's default Lambda timeout "
                    f"({target.timeout_s} s); in Lambda this invocation would time out and be "
                    "retried"
                )
    if two is not None:
        settings.notes.append(
            f"{LABELS['two_single']}: two event source mappings on one stream, so they take "
            "both of the stream's 2 reader slots per shard (DynamoDB Streams throttles above "
            f"2 concurrent readers of a shard); {LABELS['two_targets']} is one mapping, one "
            "reader. Their wall times, requests and CPU are summed (two invocations per batch)."
        )
    probes.append(probe(direct, proxy_url, target, settings.probe_samples, settings.seed, "end"))
    progress("handler CPU against the no-latency stub, 1,000 records")
    stub_env = target.environment.resolved_environment(
        {t.logical_id: "bench" for t in target.targets}
    )
    no_latency = stub.measure(
        target.asset_dir, target.handler, stub_env, 1000, settings.stub_repeat, settings.seed
    )
    progress(
        f"  {no_latency['cpu_us_per_record']:.1f} us/record "
        f"(botocore alone: {no_latency['sdk_cpu_us_per_record']:.1f})"
    )
    throttle: dict[str, Any] | None = None
    if settings.throttled:
        throttle = throttled.measure(
            target,
            target.retry_attempts,
            direct_url=direct_url,
            latency_ms=settings.latency_ms,
            seed=settings.seed,
            capacities=settings.throttled_capacities,
            progress=progress,
        )
    bwi = [s for p in probes for s in p["batch_write_25_s"]]
    single = [s for p in probes for s in p["delete_item_s"]]
    latency = {
        "batch_write_25_median_s": statistics.median(bwi),
        "delete_item_median_s": statistics.median(single),
        "batch_write_25_samples_s": bwi,
        "delete_item_samples_s": single,
    }

    cold: dict[str, Any] = {}
    if settings.cold_import:
        progress(f"cold import, {settings.import_rounds} rounds")
        function_env = target.environment.resolved_environment(
            {t.logical_id: "bench" for t in target.targets}
        )
        cold = coldstart.measure(
            target.asset_dir,
            function_env,
            worker_env(proxy_url),
            rounds=settings.import_rounds,
        )

    results: dict[str, Any] = {
        "settings": {k: v for k, v in asdict(settings).items() if k != "notes"},
        "notes": settings.notes,
        "machine": machine(),
        "load_average": {"start": load_start, "end": os.getloadavg()},
        "target": {
            "asset_dir": target.asset_dir.name,
            "handler": target.handler,
            "timeout_s": target.timeout_s,
            "concurrency": target.concurrency,
            "chunk": target.chunk,
        },
        "latency": latency,
        "runs": runs,
        "skipped": skipped,
        "cold_import": cold,
        "no_latency_stub": no_latency,
    }
    if throttle is not None:
        results["throttled"] = throttle
    if two is not None:
        results["two_targets"] = {
            "app": str(TWO_TARGETS_APP.relative_to(ROOT)),
            "asset_dir": two.both.asset_dir.name,
            "tables": {t.label: t.key_mapping for t in two.both.targets},
            "single_target_asset_dirs": [t.asset_dir.name for t in two.singles],
        }
    results["limit"] = limit_series(
        settings.sizes, latency, target.concurrency, two_targets=two is not None
    )
    results["rows"] = rows(results, settings)
    results["ratios"] = ratios(results["rows"])
    results["two_target_ratios"] = two_target_ratios(results["rows"])
    results["targets"] = targets(results, settings)
    return results


def _report_run(progress: Progress, result: dict[str, Any]) -> None:
    first = result["reps"][0]
    progress(
        f"  {_ms(result['wall_s'])}, {first['requests']} requests, "
        f"{first['keys_left']} keys left" + (f", {first['error'][:60]}" if first["error"] else "")
    )


def combine_parts(parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Two single-target scavengers' runs (one per table, same batch) as one run: what two
    functions on the same stream cost per batch. Wall time, CPU, requests and keys left are
    summed (medians summed; repetition n of one with repetition n of the other); peak memory
    is the larger one's (each function has its own)."""
    first = parts[0]
    for part in parts:
        same = (part["approach"], part["records"], part["duplicates"], part["distinct_keys"])
        if same != (
            first["approach"],
            first["records"],
            first["duplicates"],
            first["distinct_keys"],
        ):
            raise ValueError("parts of different batches")

    def total(name: str, runs: Sequence[dict[str, Any]]) -> float | None:
        values = [r.get(name) for r in runs]
        return None if None in values else sum(values)  # type: ignore[arg-type]

    def largest(name: str) -> int | None:
        values = [p.get(name) for p in parts]
        return None if None in values else max(values)  # type: ignore[type-var]

    reps = []
    for group in zip(*(p["reps"] for p in parts), strict=True):
        proxy: dict[str, dict[str, int]] = {}
        for rep in group:
            for kind, counts in rep["proxy"].items():
                into = proxy.setdefault(kind, {})
                for key, value in counts.items():
                    into[key] = into.get(key, 0) + value
        reps.append(
            {
                "wall_s": total("wall_s", group),
                "cpu_s": total("cpu_s", group),
                "server_cpu_s": total("server_cpu_s", group),
                "proxy_cpu_s": total("proxy_cpu_s", group),
                "requests": sum(r["requests"] for r in group),
                "proxy": proxy,
                "error": next((r["error"] for r in group if r["error"]), None),
                "keys_left": sum(r["keys_left"] for r in group),
                "keys_left_by_table": {
                    k: v for r in group for k, v in r["keys_left_by_table"].items()
                },
                "reported": sum(r.get("reported", 0) for r in group),
            }
        )
    return {
        "approach": first["approach"],
        "records": first["records"],
        "duplicates": first["duplicates"],
        "distinct_keys": first["distinct_keys"],
        "tables": [label for p in parts for label in p["tables"]],
        "keys_filled_by_table": {k: v for p in parts for k, v in p["keys_filled_by_table"].items()},
        "event_bytes": first["event_bytes"],
        "repeat": min(p["repeat"] for p in parts),
        "wall_s": total("wall_s", parts),
        "cpu_s": total("cpu_s", parts),
        "server_cpu_s": total("server_cpu_s", parts),
        "proxy_cpu_s": total("proxy_cpu_s", parts),
        "own_cpu_s": total("own_cpu_s", parts),
        "own_peak_bytes": largest("own_peak_bytes"),
        "peak_bytes": largest("peak_bytes"),
        "reps": reps,
        "parts": list(parts),
    }


# -- derived numbers ---------------------------------------------------------------------------


def limit_requests(distinct: int) -> int:
    return math.ceil(distinct / CHUNK)


def limit_wall(distinct: int, per_request_s: float, concurrency: int) -> float:
    """ceil(distinct / 25) requests, ``concurrency`` at a time, each ``per_request_s``."""
    return math.ceil(limit_requests(distinct) / concurrency) * per_request_s


def limit_series(
    sizes: Sequence[int],
    latency: dict[str, Any],
    concurrency: int,
    *,
    two_targets: bool = False,
) -> list[dict[str, Any]]:
    """The limit per size and duplicates setting; with ``two_targets``, also the limit of
    deleting each distinct key from two tables: ceil(2 x distinct keys / 25) requests."""
    per_request = latency["batch_write_25_median_s"]
    kinds = [("limit", 1)] + ([("limit_two_targets", 2)] if two_targets else [])
    out = []
    for records in sizes:
        for duplicates in (False, True):
            distinct = distinct_keys(records, duplicates)
            for approach, tables in kinds:
                out.append(
                    {
                        "approach": approach,
                        "records": records,
                        "duplicates": duplicates,
                        "distinct_keys": distinct,
                        "target_tables": tables,
                        "distinct_pairs": tables * distinct,
                        "requests": limit_requests(tables * distinct),
                        "wall_s": limit_wall(tables * distinct, per_request, concurrency),
                    }
                )
    return out


def gb_seconds_per_million(wall_s: float, records: int, memory_mb: int) -> float:
    """Lambda GB-seconds per million records, at ``memory_mb``, billed for ``wall_s``."""
    return wall_s * (memory_mb / MB_PER_GB) * 1_000_000 / records


def lambda_duration_estimate(wall_s: float, cpu_s: float, memory_mb: int) -> float:
    """A lower bound of the billed duration in Lambda at ``memory_mb``: the measured wall
    time, or the handler's CPU time stretched to Lambda's CPU share, whichever is longer."""
    share = min(1.0, memory_mb / LAMBDA_MB_PER_VCPU)
    return max(wall_s, cpu_s / share)


def rows(results: dict[str, Any], settings: Settings) -> list[dict[str, Any]]:
    """One row per series, size and duplicates setting: the table's content."""
    out = []
    cores = results["machine"]["nproc"] or 1
    for run in results["runs"]:
        reps = run["reps"]
        requests = sorted({r["requests"] for r in reps})
        errors = sorted({r["error"].split(":")[0] for r in reps if r["error"]})
        rejected = max(sum(r["proxy"]["errors"].values()) for r in reps)
        spent = [run["cpu_s"], run["server_cpu_s"], run["proxy_cpu_s"]]
        floor = sum(spent) / cores if None not in spent else None
        keys_left = max(r["keys_left"] for r in reps)
        tables = run.get("tables") or ["target"]
        failed = bool(errors) or keys_left > 0
        # Each function is billed for its own duration: two scavengers, twice.
        billed = run.get("parts") or [run]
        out.append(
            {
                "approach": run["approach"],
                "records": run["records"],
                "duplicates": run["duplicates"],
                "distinct_keys": run["distinct_keys"],
                "target_tables": len(tables),
                "distinct_pairs": len(tables) * run["distinct_keys"],
                "keys_left_by_table": {
                    t: max(r.get("keys_left_by_table", {}).get(t, r["keys_left"]) for r in reps)
                    for t in tables
                },
                "keys_filled_by_table": run.get("keys_filled_by_table"),
                "functions": len(billed),
                "repeat": run["repeat"],
                "wall_s": run["wall_s"],
                "requests": requests[-1],
                "requests_varied": len(requests) > 1,
                "rejected_requests": rejected,
                "all_deleted": keys_left == 0,
                "keys_left": keys_left,
                "error": errors[0] if errors else None,
                "error_message": next((r["error"] for r in reps if r["error"]), None),
                "cpu_us_per_record": run["cpu_s"] / run["records"] * 1e6,
                "own_cpu_us_per_record": None
                if run.get("own_cpu_s") is None
                else run["own_cpu_s"] / run["records"] * 1e6,
                "server_cpu_s": run["server_cpu_s"],
                "proxy_cpu_s": run["proxy_cpu_s"],
                "machine_floor_s": floor,
                "peak_bytes": run["peak_bytes"],
                "event_bytes": run["event_bytes"],
                "own_peak_bytes": run.get("own_peak_bytes"),
                "gb_s_per_million": None
                if failed
                else gb_seconds_per_million(run["wall_s"], run["records"], settings.memory_mb),
                "gb_s_per_million_cpu_share": None
                if failed
                else gb_seconds_per_million(
                    sum(
                        lambda_duration_estimate(b["wall_s"], b["cpu_s"], settings.memory_mb)
                        for b in billed
                    ),
                    run["records"],
                    settings.memory_mb,
                ),
            }
        )
    for limit in results["limit"]:
        out.append(
            {
                **limit,
                "all_deleted": None,
                "gb_s_per_million": gb_seconds_per_million(
                    limit["wall_s"], limit["records"], settings.memory_mb
                ),
                "gb_s_per_million_cpu_share": None,
            }
        )
    order = {name: i for i, name in enumerate(ORDER)}
    out.sort(key=lambda r: (r["records"], r["duplicates"], order[r["approach"]]))
    return out


def find(rows_: list[dict[str, Any]], approach: str, records: int, duplicates: bool) -> Any:
    for row in rows_:
        if (row["approach"], row["records"], row["duplicates"]) == (approach, records, duplicates):
            return row
    return None


def ratios(rows_: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Wall-time and request ratios of one run, per size and duplicates setting."""
    out = []
    for records, duplicates in sorted({(r["records"], r["duplicates"]) for r in rows_}):
        lib = find(rows_, "library", records, duplicates)
        per = find(rows_, "per_record", records, duplicates)
        art = find(rows_, "article", records, duplicates)
        lim = find(rows_, "limit", records, duplicates)
        if lib is None:
            continue
        out.append(
            {
                "records": records,
                "duplicates": duplicates,
                "per_record_over_library": per["wall_s"] / lib["wall_s"] if per else None,
                "library_over_limit": lib["wall_s"] / lim["wall_s"] if lim else None,
                "library_over_machine_floor": lib["wall_s"] / lib["machine_floor_s"]
                if lib.get("machine_floor_s")
                else None,
                "article_over_library": art["wall_s"] / lib["wall_s"]
                if art and art["all_deleted"] and not art["error"]
                else None,
                "per_record_requests_over_library": per["requests"] / lib["requests"]
                if per
                else None,
            }
        )
    return out


def two_target_ratios(rows_: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The two-target case per size and duplicates setting: one scavenger with both targets
    against two single-target scavengers (summed) and against its limit."""
    out = []
    for records, duplicates in sorted({(r["records"], r["duplicates"]) for r in rows_}):
        both = find(rows_, "two_targets", records, duplicates)
        single = find(rows_, "two_single", records, duplicates)
        lim = find(rows_, "limit_two_targets", records, duplicates)
        if both is None:
            continue
        out.append(
            {
                "records": records,
                "duplicates": duplicates,
                "distinct_keys": both["distinct_keys"],
                "distinct_pairs": both["distinct_pairs"],
                "requests": both["requests"],
                "two_single_requests": single["requests"] if single else None,
                "limit_requests": lim["requests"] if lim else None,
                "all_deleted": both["all_deleted"],
                "keys_left_by_table": both["keys_left_by_table"],
                "two_targets_over_two_single": both["wall_s"] / single["wall_s"]
                if single
                else None,
                "two_targets_over_limit": both["wall_s"] / lim["wall_s"] if lim else None,
                "cpu_two_targets_over_two_single": both["cpu_us_per_record"]
                / single["cpu_us_per_record"]
                if single
                else None,
            }
        )
    return out


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "MISS")


def targets(results: dict[str, Any], settings: Settings) -> list[dict[str, Any]]:
    """The issue's targets, each PASS, MISS or n/a (not measured), with the measured values."""
    rows_ = results["rows"]
    out: list[dict[str, Any]] = []

    libs = [r for r in rows_ if r["approach"] == "library"]
    exact = [
        r["requests"] == limit_requests(r["distinct_keys"]) and not r["requests_varied"]
        for r in libs
    ]
    out.append(
        {
            "target": "requests = ceil(distinct keys / 25) exactly, without faults (library)",
            "verdict": _verdict(all(exact) if libs else None),
            "measured": ", ".join(
                f"{r['records']}{'d' if r['duplicates'] else ''}: {r['requests']}"
                f"/{limit_requests(r['distinct_keys'])}"
                for r in libs
            ),
        }
    )

    for duplicates in (False, True):
        suffix = " (with duplicate keys)" if duplicates else ""
        at_1000 = (
            x for x in results["ratios"] if (x["records"], x["duplicates"]) == (1000, duplicates)
        )
        ratio = next(at_1000, None)
        fast = ratio["per_record_over_library"] if ratio else None
        near = ratio["library_over_limit"] if ratio else None
        out.append(
            {
                "target": f"1,000 records: >= 50x faster than per-record deletes{suffix}",
                "verdict": _verdict(None if fast is None else fast >= 50),
                "measured": "not measured" if fast is None else f"{fast:.1f}x",
            }
        )
        out.append(
            {
                "target": f"1,000 records: within 1.5x the limit{suffix}",
                "verdict": _verdict(None if near is None else near <= 1.5),
                "measured": "not measured" if near is None else f"{near:.2f}x the limit",
            }
        )

    for r in libs:
        if r["duplicates"]:
            continue
        cpu = r["cpu_us_per_record"]
        out.append(
            {
                "target": f"handler CPU <= 15 us/record, {r['records']} records",
                "verdict": _verdict(cpu <= 15),
                "measured": f"{cpu:.1f} us/record",
            }
        )

    stubbed = results.get("no_latency_stub")
    if stubbed:
        cpu, sdk = stubbed["cpu_us_per_record"], stubbed.get("sdk_cpu_us_per_record")
        floor = "" if sdk is None else f" (the same requests from botocore alone: {sdk:.1f})"
        out.append(
            {
                "target": "handler CPU <= 45 us/record, 1,000 records, no-latency stub",
                "verdict": _verdict(cpu <= 45),
                "measured": f"{cpu:.1f} us/record{floor}",
            }
        )
    warm = next(
        (x for x in results["ratios"] if (x["records"], x["duplicates"]) == (1000, False)), None
    )
    if warm and warm["library_over_limit"] is not None:
        over_floor = warm["library_over_machine_floor"]
        floor = (
            ""
            if not over_floor
            else f" (this machine's CPU floor is {warm['library_over_limit'] / over_floor:.2f}x)"
        )
        out.append(
            {
                "target": "1,000 records: warm wall time <= 2x the limit",
                "verdict": _verdict(warm["library_over_limit"] <= 2),
                "measured": f"{warm['library_over_limit']:.2f}x the limit{floor}",
            }
        )
    out += (results.get("throttled") or {}).get("targets", [])

    cold = results.get("cold_import") or {}
    boto = cold.get("import boto3")
    paired = cold.get(coldstart.PAIRED)
    plain = cold.get("library: import scavenger.handler (no .pyc, as in Lambda)")
    cached = cold.get("library: import scavenger.handler (.pyc cached)")
    if boto and paired and plain and cached:
        q1, _, q3 = paired["ratio_quartiles"]
        out.append(
            {
                "target": "cold import <= 1.15x `import boto3` (no .pyc, as in Lambda)",
                "verdict": _verdict(paired["ratio_median"] <= 1.15),
                "measured": f"{paired['ratio_median']:.2f}x paired in one process "
                f"(quartiles {q1:.2f}-{q3:.2f}); separate processes: "
                f"{plain['median_s'] / boto['median_s']:.2f}x, "
                f"with .pyc cached {cached['median_s'] / boto['median_s']:.2f}x",
            }
        )
    else:
        out.append(
            {
                "target": "cold import <= 1.15x `import boto3`",
                "verdict": "n/a",
                "measured": "not measured",
            }
        )

    for r in libs:
        if r["duplicates"] or r["peak_bytes"] is None:
            continue
        times = r["peak_bytes"] / r["event_bytes"]
        out.append(
            {
                "target": f"peak memory <= 3x the event's size, {r['records']} records",
                "verdict": _verdict(times <= 3),
                "measured": f"{times:.2f}x ({_kib(r['peak_bytes'])} peak, "
                f"{_kib(r['event_bytes'])} event)",
            }
        )

    both = [r for r in rows_ if r["approach"] == "two_targets"]
    if both:
        out.append(
            {
                "target": "two targets: requests = ceil(2 x distinct keys / 25) exactly, "
                "without faults (library, one scavenger)",
                "verdict": _verdict(
                    all(
                        r["requests"] == limit_requests(r["distinct_pairs"])
                        and not r["requests_varied"]
                        for r in both
                    )
                ),
                "measured": ", ".join(
                    f"{r['records']}{'d' if r['duplicates'] else ''}: {r['requests']}"
                    f"/{limit_requests(r['distinct_pairs'])}"
                    for r in both
                ),
            }
        )
        checked = both + [r for r in rows_ if r["approach"] == "two_single"]
        out.append(
            {
                "target": "two targets: every key deleted in both tables (one scavenger with "
                "two targets, and two single-target scavengers)",
                "verdict": _verdict(all(r["all_deleted"] and not r["error"] for r in checked)),
                "measured": "; ".join(
                    f"{'one' if r['approach'] == 'two_targets' else 'two'} "
                    f"{r['records']}{'d' if r['duplicates'] else ''}: "
                    + ", ".join(
                        f"{t} {r['distinct_keys'] - left}/{r['distinct_keys']}"
                        for t, left in r["keys_left_by_table"].items()
                    )
                    for r in checked
                ),
            }
        )

    articles = [r for r in rows_ if r["approach"] == "article" and r["duplicates"]]
    shown = [
        r["error"] == "ClientError" and "ValidationException" in (r["error_message"] or "")
        for r in articles
    ]
    out.append(
        {
            "target": "the article's approach shown failing on duplicate keys",
            "verdict": _verdict(all(shown) if articles else None),
            "measured": "; ".join(
                f"{r['records']}: {r['rejected_requests']}/{r['requests']} requests rejected, "
                f"{r['keys_left']} keys left, invocation failed"
                if r["error"]
                else f"{r['records']}: did not fail"
                for r in articles
            ),
        }
    )
    return out


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def _kib(size: float) -> str:
    return f"{size / 1024:.0f} KiB"
