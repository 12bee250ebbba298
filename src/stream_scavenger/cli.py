"""The ``stream-scavenger`` command line."""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .local.assembly import AssemblyError, FunctionDef, StackDef, load_assembly
from .local.dynamodb_local import (
    LOCAL_CLIENT_SETTINGS,
    DynamoDBLocal,
    DynamoDBLocalError,
    ensure_jar_dir,
    is_loopback,
    local_client,
    require_java,
)
from .local.event_source_mapping import (
    Checkpoints,
    Destination,
    FileDestination,
    LocalEventSourceMapping,
    MemoryDestination,
    SqsDestination,
    create_table,
    table_names_for,
)
from .local.invoker import FunctionError, SubprocessInvoker
from .local.scenario import (
    CheckReport,
    check_assembly,
    example_app,
    paused_reason,
    runnable,
    synthesize,
)
from .runtime.scavenger.config import ScavengerConfig
from .runtime.scavenger.filtering import MappingFilters

#: Segments a backfill scans at once (``backfill.MAX_WORKERS``, kept here for the help text).
MAX_BACKFILL_WORKERS = 32

EXIT_CODES = """exit status:
  0  success (every scavenger deleted exactly the matching items, a paused one skipped;
     invoke: the function answered)
  1  a scavenger did not delete exactly the matching items; invoke: the function failed
  2  usage or set-up error: no Java 17+, no DynamoDB Local (and npm could not install it),
     endpoint unreachable, synthesis failed, not a cloud assembly, no scavenger in it, or
     (demo, run) only paused ones: event source mapping with Enabled: false"""


class _Endpoint:
    """A DynamoDB endpoint: the one given, or a DynamoDB Local started for the command."""

    def __init__(self, endpoint_url: str | None) -> None:
        self.given = endpoint_url
        self._jar_dir: Path | None = None

    def prepare(self) -> _Endpoint:
        """Check Java and find (or install) DynamoDB Local: before the slow synthesis, so a
        missing piece is reported in a second, not after it."""
        if not self.given and self._jar_dir is None:
            require_java()
            self._jar_dir = ensure_jar_dir()
        return self

    @contextlib.contextmanager
    def open(self) -> Iterator[tuple[str, Any, Any]]:
        if self.given:
            ddb = local_client("dynamodb", self.given)
            try:
                ddb.list_tables(Limit=1)
            except Exception as err:  # noqa: BLE001 - reported as a set-up error
                raise DynamoDBLocalError(f"endpoint {self.given} does not answer: {err}") from None
            yield self.given, ddb, local_client("dynamodbstreams", self.given)
        else:
            self.prepare()
            with DynamoDBLocal(self._jar_dir) as local:
                yield local.endpoint_url, local.client("dynamodb"), local.client("dynamodbstreams")


def _progress(
    total: int, unit: str = "rec", desc: str = "scavenging", initial: int = 0
) -> tuple[Callable[[int], None], Callable[[], None]]:
    """A progress bar that appears with the first batch (not during the set-up before it)."""
    try:
        from tqdm import tqdm
    except ImportError:  # the progress bar is a nicety of the `local` extra
        return (lambda n: None), (lambda: None)
    bars: list[Any] = []

    def update(records: int) -> None:
        if not bars:
            bars.append(
                tqdm(
                    total=total or None,
                    unit=unit,
                    desc=desc,
                    file=sys.stderr,
                    leave=False,
                    initial=initial,
                )
            )
        bars[0].update(records)

    def close() -> None:
        for bar in bars:
            bar.close()

    return update, close


def _print_reports(reports: list[CheckReport]) -> None:
    header = (
        "scavenger", "records", "keys deleted", "unrelated kept", "BatchWriteItem",
        "retries", "WCU", "invocations", "seconds", "records/s", "result",
    )  # fmt: skip
    rows = [
        (f"{r.stack}/{r.function}", *["-"] * (len(header) - 2), "paused")
        if r.paused
        else (
            f"{r.stack}/{r.function}",
            str(r.records),
            f"{r.deleted}/{r.keys}",
            f"{r.unrelated_kept}/{r.unrelated_total}",
            f"{r.metrics.get('BatchWriteRequests', 0):.0f}",
            f"{r.metrics.get('Retries', 0):.0f}",
            f"{r.metrics.get('ConsumedWriteCapacity', 0):.0f}",
            str(r.run.invocations),
            f"{r.seconds:.2f}",
            f"{r.records / r.seconds:.0f}" if r.seconds else "-",
            "OK" if r.ok else "FAILED",
        )
        for r in reports
    ]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def _run_assembly(cdk_out: Path, endpoint: _Endpoint, records: int) -> int:
    stacks = load_assembly(cdk_out)  # fail early, before starting anything
    runnable(stacks, cdk_out)
    for stack in stacks:
        for function in stack.functions:
            reason = paused_reason(stack, function)
            if reason:
                print(f"stream-scavenger: skipped: {reason}", file=sys.stderr)
    update, close = _progress(records)
    with endpoint.open() as (url, ddb, streams):
        try:
            reports = check_assembly(cdk_out, url, (ddb, streams), records, on_batch=update)
        finally:
            close()
    _print_reports(reports)
    return 0 if all(r.ok for r in reports) else 1


def _demo(args: argparse.Namespace) -> int:
    endpoint = _Endpoint(args.endpoint_url).prepare()
    print(f"synthesizing the bundled example app ({example_app().name})", file=sys.stderr)
    cdk_out = synthesize([sys.executable, str(example_app())])
    return _run_assembly(cdk_out, endpoint, args.records)


def _run(args: argparse.Namespace) -> int:
    for option in ("checkpoint", "on_failure_file", "on_failure_queue_url"):
        if getattr(args, option) and not args.table:
            raise ValueError(f"--{option.replace('_', '-')} works with --table")
    if args.table and not args.endpoint_url:
        raise ValueError("--table works with --endpoint-url (tables that already exist there)")
    if args.cloud_assembly:
        load_assembly(args.cloud_assembly)  # a quick check, before DynamoDB Local's
    endpoint = _Endpoint(args.endpoint_url).prepare()  # before the slow synthesis
    cdk_out = Path(args.cloud_assembly) if args.cloud_assembly else synthesize(args.app)
    if args.table:
        return _drain_existing(cdk_out, args)
    return _run_assembly(cdk_out, endpoint, args.records)


def _drain_existing(cdk_out: Path, args: argparse.Namespace) -> int:
    """Existing tables on an endpoint: drain the source's stream through the function.

    Exit 0 only if nothing was given up on, the function never failed, and a fresh read
    after each shard's checkpoint finds no record left. The checkpoint belongs to the
    stream, the function and a hash of its configuration; a dry run keeps none.
    """
    stack, function = _pick_function(str(cdk_out), args.function, refuse_paused=True)
    if function.mapping is None or function.mapping.source_table is None:
        raise AssemblyError(f"{function.logical_id} has no event source mapping on a table")
    names = _table_names(stack, args.table)
    config, digest = _configuration(function, names)
    on_failure: Destination = MemoryDestination()
    where = "kept nowhere (--on-failure-file or --on-failure-queue-url keeps them)"
    if args.on_failure_file:
        on_failure = FileDestination(Path(args.on_failure_file))
        where = f"appended to {args.on_failure_file}"
    elif args.on_failure_queue_url:
        sqs = _client("sqs", args.sqs_endpoint_url)
        on_failure = SqsDestination(sqs, args.on_failure_queue_url)
        where = f"sent to {args.on_failure_queue_url} (`stream-scavenger redrive` replays them)"
    with _Endpoint(args.endpoint_url).open() as (url, ddb, streams):
        source = names[function.mapping.source_table]
        stream_arn = ddb.describe_table(TableName=source)["Table"].get("LatestStreamArn")
        if not stream_arn:
            raise ValueError(f"table {source} on {url} has no stream")
        scope = f"{function.logical_id}-{digest[:12]}"
        key = f"{stream_arn} {function.logical_id} {digest}"
        default = Checkpoints.default_path(stream_arn, scope)
        path = None if args.no_checkpoint else Path(args.checkpoint or default)
        if config.dry_run:
            path = None
            print(
                "dry run: the function is configured with dry_run, so it deletes nothing, "
                "and no checkpoint is loaded or saved",
                flush=True,
            )
        checkpoints = Checkpoints.load(path, key)
        if path:
            resuming = ", resuming after it" if checkpoints.shards else ""
            print(
                f"checkpoint: {path.absolute()} (function {function.logical_id}, "
                f"configuration {digest[:12]}){resuming}",
                flush=True,
            )
        with SubprocessInvoker.for_function(function, names, url) as invoker:
            mapping = LocalEventSourceMapping(
                streams,
                stream_arn,
                invoker.invoke,
                function.mapping.properties,
                on_failure=on_failure,
                checkpoints=checkpoints,
                function_arn=_local_function_arn(stack, function),
            )
            try:
                run = mapping.run()
            except KeyboardInterrupt:
                if path:
                    print(
                        f"checkpoint {path.absolute()} kept: the same command resumes after "
                        "the last finished batch",
                        file=sys.stderr,
                    )
                raise
            metrics = invoker.metrics
        left = mapping.undelivered()
    keys = metrics.get("KeysDeleted", 0)
    deleted = (
        f"would delete: {keys:.0f} (dry run)" if config.dry_run else f"keys deleted: {keys:.0f}"
    )
    print(
        f"records read: {run.records_read}, filtered out: {run.records_filtered_out}, "
        f"invocations: {run.invocations}, {deleted}, "
        f"BatchWriteItem requests: {metrics.get('BatchWriteRequests', 0):.0f}, "
        f"records given up on: {run.records_given_up}"
    )
    if run.records_before_start:
        print(
            f"records before the starting position (LATEST: made before the mapping first "
            f"opened their shard), not delivered: {run.records_before_start}"
        )
    if run.given_up:
        print(f"on-failure messages: {len(run.given_up)}, {where}")
    for shard_id, held in run.held.items():
        print(
            f"checkpoint held: shard {shard_id} stays at {held or 'its start'}: what was given "
            "up on after it is kept nowhere, so the same command delivers it (and the records "
            "after it) again"
        )
    for shard_id, count in left.items():
        if shard_id not in run.held:
            after = checkpoints.shards.get(shard_id) or "its start"
            print(f"left in the stream: shard {shard_id}: {count} record(s) after {after}")
    return 0 if not (run.given_up or run.function_errors or left) else 1


def _configuration(function: FunctionDef, names: dict[str, str]) -> tuple[ScavengerConfig, str]:
    """The function's configuration and a hash of what decides its deletes: the function,
    ``SCAVENGER_CONFIG``, the target tables and the mapping's filters."""
    environment = function.resolved_environment(names)
    config = ScavengerConfig.from_env(environment)
    filters = function.mapping.properties.get("FilterCriteria") if function.mapping else None
    decisive = {
        "function": function.logical_id,
        "SCAVENGER_CONFIG": environment.get("SCAVENGER_CONFIG"),
        "targets": [target.table for target in config.targets],
        "FilterCriteria": filters,
    }
    text = json.dumps(decisive, sort_keys=True, default=str)
    return config, hashlib.sha256(text.encode()).hexdigest()


def _local_function_arn(stack: StackDef, function: FunctionDef) -> str:
    """The ARN the local mapping's on-failure messages carry: named as CloudFormation names
    a function (``<stack>-<logical ID>-<suffix>``), so redrive matches them to it."""
    stack_name = re.sub(r"[^A-Za-z0-9-]+", "-", stack.name)
    return (
        f"arn:aws:lambda:us-east-1:000000000000:function:{stack_name}-{function.logical_id}-local"
    )


def _pick_function(
    cloud_assembly: str, prefix: str | None, refuse_paused: bool = False
) -> tuple[StackDef, FunctionDef]:
    """The one function ``prefix`` chooses; with ``refuse_paused`` (existing tables), a paused
    one is named and left out, and an error when that leaves none (nothing was deleted)."""
    candidates = [(s, f) for s in load_assembly(cloud_assembly) for f in s.functions]
    if prefix:
        candidates = [(s, f) for s, f in candidates if f.logical_id.startswith(prefix)]
    if refuse_paused:
        refused = [r for s, f in candidates if (r := paused_reason(s, f))]
        candidates = [(s, f) for s, f in candidates if not paused_reason(s, f)]
        if refused and not candidates:
            for reason in refused[:-1]:
                print(f"stream-scavenger: {reason}", file=sys.stderr)
            raise AssemblyError(f"{refused[-1]}; nothing was deleted")
        for reason in refused:
            print(f"stream-scavenger: skipped: {reason}", file=sys.stderr)
    if len(candidates) != 1:
        found = ", ".join(f.logical_id for _, f in candidates) or "none"
        raise AssemblyError(f"choose one scavenger function with --function (found: {found})")
    return candidates[0]


def _table_names(stack: StackDef, given: list[str]) -> dict[str, str]:
    """Logical ID -> table name: the logical ID, unless --table LOGICAL_ID=NAME says otherwise."""
    names = table_names_for(stack.tables)
    for pair in given:
        logical_id, _, name = pair.partition("=")
        names[logical_id] = name
    return names


def _invoke(args: argparse.Namespace) -> int:
    event = json.loads(Path(args.event).read_text())
    stack, function = _pick_function(args.cloud_assembly, args.function)
    names = _table_names(stack, args.table)
    with _Endpoint(args.endpoint_url).open() as (url, ddb, _):
        if not args.endpoint_url:
            for logical_id, table in stack.tables.items():
                create_table(ddb, names[logical_id], table)
        with SubprocessInvoker.for_function(function, names, url) as invoker:
            try:
                print(json.dumps(invoker.invoke(event), indent=2))
            except FunctionError as err:
                print(json.dumps({"errorType": err.error_type, "errorMessage": str(err)}, indent=2))
                return 1
    return 0


def _client(service: str, url: str | None) -> Any:
    """A boto3 client: a local endpoint gets dummy credentials; otherwise your normal AWS setup."""
    import boto3

    return boto3.client(service) if url is None else local_client(service, url)


def _clients(args: argparse.Namespace) -> dict[str, Any]:
    """The redrive's clients (Lambda's only with --function-name)."""
    clients = {
        "dynamodb": _client("dynamodb", args.endpoint_url),
        "dynamodbstreams": _client("dynamodbstreams", args.endpoint_url),
        "sqs": _client("sqs", args.sqs_endpoint_url),
    }
    if args.function_name:
        clients["lambda"] = _client("lambda", None)
    return clients


def _function_environment(
    args: argparse.Namespace, clients: dict[str, Any]
) -> tuple[dict[str, str], Any]:
    """The scavenger's environment and its event source mappings (whose filters apply)."""
    from .redrive import assembly_mappings, deployed_mappings

    if args.function_name:
        return deployed_mappings(clients["lambda"], args.function_name)
    stack, function = _pick_function(args.cloud_assembly, args.function)
    names = _table_names(stack, args.table)
    return function.resolved_environment(names), assembly_mappings(
        function, names, clients["dynamodb"], args.function_arn
    )


def _redrive(args: argparse.Namespace) -> int:
    from botocore.config import Config

    from .redrive import redrive
    from .runtime.scavenger.handler import Scavenger, make_client

    if args.function_arn and not args.cloud_assembly:
        raise ValueError("--function-arn works with --cloud-assembly")
    clients = _clients(args)
    environment, mappings = _function_environment(args, clients)
    config = ScavengerConfig.from_env(environment)
    if config.dry_run and not args.dry_run:
        raise ValueError(
            "the function is configured with dry_run: it deletes nothing and answers success, "
            "so replaying through it would drop every message; use --dry-run to count"
        )
    overrides: dict[str, Any] = {}
    if args.endpoint_url:
        overrides = {"endpoint_url": args.endpoint_url, **LOCAL_CLIENT_SETTINGS}
        if is_loopback(args.endpoint_url):  # as local_client: never through HTTP(S)_PROXY
            overrides["config"] = Config(proxies={})
    scavenger = Scavenger(config, make_client(config, **overrides))
    report = redrive(
        clients["sqs"],
        args.queue_url,
        clients["dynamodbstreams"],
        lambda event: scavenger.handle(event, None),
        mappings,
        dry_run=args.dry_run,
    )
    for line in report.lines():
        print(line)
    return 0 if report.ok else 1


def _backfill(args: argparse.Namespace) -> int:
    """Scan the source and scavenge what its stream can no longer deliver (see backfill.py)."""
    from . import backfill as bf
    from .runtime.scavenger.backfill import (
        DEFAULT_PAGE_SIZE,
        SourceTable,
        check_filters,
        event_name_for,
    )
    from .runtime.scavenger.handler import make_client

    if args.deployed:
        return _backfill_deployed(args)
    args.segments = 4 if args.segments is None else args.segments
    args.page_size = DEFAULT_PAGE_SIZE if args.page_size is None else args.page_size
    for option, value, low, high in (
        ("--segments", args.segments, 1, bf.MAX_SEGMENTS),
        ("--page-size", args.page_size, 1, bf.MAX_PAGE_SIZE),
    ):
        if not low <= value <= high:
            raise ValueError(f"{option} must be {low:,}..{high:,}, got {value}")
    for option, units in (("--max-write-units", args.max_write_units),
                          ("--max-read-units", args.max_read_units)):  # fmt: skip
        if units is not None and not 0 < units <= 10_000_000:
            raise ValueError(f"{option} must be more than 0 (units per second), got {units}")
    if args.function and args.function_name:
        raise ValueError("--function works with --app or --cloud-assembly")
    ddb = _client("dynamodb", args.endpoint_url)
    where = args.endpoint_url or "AWS"
    if args.function_name:
        function_id, environment, properties, source_name, view = _deployed_source(args, ddb)
    else:
        if args.cloud_assembly:
            load_assembly(args.cloud_assembly)  # a quick check, before the slow synthesis
        cdk_out = Path(args.cloud_assembly) if args.cloud_assembly else synthesize(args.app)
        stack, function = _pick_function(str(cdk_out), args.function)
        if function.mapping is None or function.mapping.source_table is None:
            raise AssemblyError(f"{function.logical_id} has no event source mapping on a table")
        names = _real_table_names(stack, args.table)
        function_id, environment = function.logical_id, function.resolved_environment(names)
        properties = function.mapping.properties
        source_name = names[function.mapping.source_table]
        view = stack.tables[function.mapping.source_table].stream_view_type
    config = ScavengerConfig.from_env(environment)
    event_name = event_name_for(config)  # a REMOVE-only scavenger: refused here
    filters = MappingFilters.of(properties)
    check_filters([pattern.pattern for pattern in filters.patterns])
    try:
        described = ddb.describe_table(TableName=source_name)["Table"]
    except Exception as err:  # noqa: BLE001 - a set-up error: nothing was touched yet
        raise ValueError(f"cannot read source table {source_name} on {where}: {err}") from None
    keys = tuple(k["AttributeName"] for k in described["KeySchema"])
    view = view or (described.get("StreamSpecification") or {}).get("StreamViewType")
    if not view:
        raise ValueError(
            f"cannot tell which images the records of {source_name}'s stream carry (its "
            "view type: neither the mapping's stream nor the table says): a backfill that "
            "guessed could select items the stream's records never showed"
        )
    source = SourceTable(source_name, keys, view, event_name)
    digest = bf.config_digest(function_id, environment, properties.get("FilterCriteria"))
    dry_run = args.dry_run or config.dry_run
    path = None
    if dry_run:
        why = "--dry-run" if args.dry_run else "the function is configured with dry_run"
        print(f"dry run ({why}): nothing is deleted, no checkpoint is loaded or saved")
    elif not args.no_checkpoint:
        path = Path(args.checkpoint or bf.Checkpoint.default_path(source_name, function_id, digest))
    identity = {"table": source_name, "function": function_id, "configuration": digest,
                "segments": args.segments}  # fmt: skip
    checkpoint = bf.Checkpoint.load(path, identity)
    if path:
        resuming = ", resuming after it" if checkpoint.after or checkpoint.done else ""
        print(f"checkpoint: {path.absolute()} (function {function_id}, configuration "
              f"{digest[:12]}, {args.segments} segment(s)){resuming}", flush=True)  # fmt: skip
    overrides: dict[str, Any] = {}
    if args.endpoint_url:
        from botocore.config import Config

        overrides = {"endpoint_url": args.endpoint_url, **LOCAL_CLIENT_SETTINGS}
        if is_loopback(args.endpoint_url):  # as local_client: never through HTTP(S)_PROXY
            overrides["config"] = Config(proxies={})
    total = int(described.get("ItemCount") or 0)
    update, close = _progress(total, unit="item", desc="backfill", initial=checkpoint.scanned)
    try:
        report = bf.backfill(
            ddb, config, lambda: make_client(config, **dict(overrides)), filters, source,
            segments=args.segments, page_size=args.page_size,
            max_write_units=args.max_write_units, max_read_units=args.max_read_units,
            checkpoint=checkpoint, dry_run=dry_run, on_page=update,
        )  # fmt: skip
    except KeyboardInterrupt:
        if path:
            print(f"checkpoint {path.absolute()} kept: the same command resumes after each "
                  "segment's last finished page", file=sys.stderr)  # fmt: skip
        raise
    finally:
        close()
    for line in bf.summary_lines(report):
        print(line)
    return 0 if report.ok else 1


def _backfill_deployed(args: argparse.Namespace) -> int:
    """Start (or redrive, or follow) an execution of the deployed state machine."""
    from botocore.exceptions import BotoCoreError, ClientError

    from . import backfill_execution as deployed

    for option, given in (
        ("--segments", args.segments), ("--page-size", args.page_size),
        ("--max-write-units", args.max_write_units), ("--max-read-units", args.max_read_units),
        ("--checkpoint", args.checkpoint), ("--function", args.function),
        ("--endpoint-url", args.endpoint_url), ("--dry-run", args.dry_run or None),
        ("--no-checkpoint", args.no_checkpoint or None), ("--table", args.table or None),
    ):  # fmt: skip
        if given is not None:
            raise ValueError(
                f"{option} does not apply with --deployed: the state machine's segments, page "
                "size and budgets are the construct's BackfillOptions (a dry run: backfill "
                "--function-name FUNCTION --dry-run, on this machine)"
            )
    sfn, lam = _client("stepfunctions", None), _client("lambda", None)
    execution: str | None = None
    try:
        machine, execution = deployed.find_machine(sfn, args.deployed)
        worker = deployed.worker_of(sfn, lam, machine, execution)
        return _run_deployed(sfn, machine, execution, worker)
    except (ClientError, BotoCoreError) as err:
        raise ValueError(f"Step Functions or Lambda answered: {err}") from None


def _run_deployed(sfn: Any, machine: str, execution: str | None, worker: Any) -> int:
    """Start or redrive the execution, follow it with the progress bar, print the summary."""
    from botocore.exceptions import BotoCoreError, ClientError

    from . import backfill as bf
    from . import backfill_execution as deployed

    total = 0
    if worker.settings is None:
        print(f"{worker.why_unknown}; followed without a total", file=sys.stderr)
    else:
        with contextlib.suppress(Exception):  # only the progress bar's total is missing
            table = _client("dynamodb", None).describe_table(TableName=worker.settings.source_table)
            total = int(table["Table"].get("ItemCount") or 0)
    bar: dict[str, Any] = {}

    def progress(scanned: int) -> None:
        if not bar:  # a resumed execution's bar starts where it is
            bar["update"], bar["close"] = _progress(
                total, unit="item", desc="backfill", initial=scanned
            )
            bar["seen"] = scanned
        bar["update"](scanned - bar["seen"])
        bar["seen"] = scanned

    try:
        execution, what = deployed.start_or_resume(sfn, machine, execution)
        print(f"execution {execution}: {what}", flush=True)
        described, answers = deployed.follow(sfn, execution, progress, poll_s=deployed.POLL_S)
    except KeyboardInterrupt:
        if execution:
            print(f"the execution goes on in Step Functions: follow it with `stream-scavenger "
                  f"backfill --deployed {execution}`; `aws stepfunctions stop-execution "
                  f"--execution-arn {execution}` stops it, and the same --deployed command then "
                  "resumes it", file=sys.stderr)  # fmt: skip
        raise
    except (ClientError, BotoCoreError) as err:
        if not execution:
            raise
        raise ValueError(f"Step Functions answered: {err}; the execution may still run: "
                         f"`stream-scavenger backfill --deployed {execution}` follows it "
                         "again") from None  # fmt: skip
    finally:
        if bar:
            bar["close"]()
    report = deployed.report_of(described, answers, worker, total)
    retry = "a new execution scans again from the start (deletes are idempotent)"
    for line in bf.summary_lines(report, retry=retry):
        print(line)
    status = described["status"]
    if status == "SUCCEEDED":
        return 0 if report.ok else 1
    why = ": ".join(str(described[k]) for k in ("error", "cause") if described.get(k))
    if what.startswith(deployed.NOT_REDRIVABLE):
        then = (f"it cannot be redriven ({what}); a new execution (--deployed {machine}) "
                "scans from the start")  # fmt: skip
    else:
        then = (f"the same command (--deployed {execution}) redrives it, and its unfinished "
                "segments go on from their last worker call")  # fmt: skip
    print(f"execution {status}{f' ({why})' if why else ''}: {then}")
    return 1


def _deployed_source(
    args: argparse.Namespace, ddb: Any
) -> tuple[str, dict[str, str], Any, str, str | None]:
    """A deployed function: its environment and its one table-stream mapping (filters read
    back as redrive reads them); the source table is named by the mapping's stream ARN."""
    from .redrive import deployed_mappings

    environment, mappings = deployed_mappings(_client("lambda", None), args.function_name)
    found = [m for m in mappings.mappings if ":table/" in str(m.get("EventSourceArn"))]
    if len(found) != 1:
        raise ValueError(f"function {args.function_name} has {len(found)} event source mappings "
                         "on a DynamoDB stream; a backfill needs exactly one")  # fmt: skip
    mapping = found[0]
    if mapping.get("FilterCriteriaError") or (
        mapping.get("KMSKeyArn") and not mapping.get("FilterCriteria")
    ):
        raise ValueError(
            "cannot read the mapping's filter criteria (encrypted: kms:Decrypt on "
            f"{mapping.get('KMSKeyArn')} is needed); a backfill without them would delete more"
        )
    table = str(mapping["EventSourceArn"]).partition(":table/")[2].split("/stream/")[0]
    view = None
    with contextlib.suppress(Exception):  # then the table's stream says, or it is refused
        streams = _client("dynamodbstreams", args.endpoint_url)
        stream = streams.describe_stream(StreamArn=mapping["EventSourceArn"], Limit=1)
        view = stream["StreamDescription"].get("StreamViewType")
    return args.function_name, environment, mapping, table, view


def _real_table_names(stack: StackDef, given: list[str]) -> dict[str, str]:
    """Logical ID -> table name: --table LOGICAL_ID=NAME, else the template's TableName, else
    the logical ID (DynamoDB Local's names)."""
    names = table_names_for(stack.tables)
    for logical_id, table in stack.tables.items():
        if isinstance(table.properties.get("TableName"), str):
            names[logical_id] = table.properties["TableName"]
    for pair in given:
        logical_id, _, name = pair.partition("=")
        names[logical_id] = name
    return names


def build_parser() -> argparse.ArgumentParser:
    """The command line's parser (also rendered into API.md)."""
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="stream-scavenger",
        description="Run a synthesized stream-scavenger on this machine, against DynamoDB Local.",
        epilog=EXIT_CODES,
        formatter_class=raw,
    )
    parser.add_argument("--version", action="version", version=f"stream-scavenger {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser(
        "demo",
        help="the example app end to end on DynamoDB Local, with a summary",
        description="Start DynamoDB Local, synthesize the bundled example app (messages -> "
        "staging), fill staging with N items and unrelated ones, write the N matching "
        "messages, run the function's own asset on the stream until it is drained, verify "
        "that exactly the matching staging items are gone, and print a summary.",
        epilog="examples:\n  stream-scavenger demo\n  stream-scavenger demo --records 10000\n\n"
        + EXIT_CODES,
        formatter_class=raw,
    )
    demo.add_argument("--records", type=int, default=3000, help="matching records (default 3000)")
    demo.set_defaults(run=_demo)

    run = commands.add_parser(
        "run",
        help="the same for your own app or cloud assembly",
        description="For each scavenger of your app: create its stack's tables as the template "
        "defines them, fill the target, write matching source items, run the function's own "
        "asset on the stream (batch size, filters, checkpointing and retries as the event "
        "source mapping says), and verify that exactly the matching target items are gone. "
        "A scavenger whose event source mapping is paused (Enabled: false) reads nothing once "
        "deployed, so it is not run: skipped, with a 'paused' row in the summary (and refused "
        "with --table, deleting nothing).",
        epilog="examples:\n  stream-scavenger run --app 'python app.py'\n"
        "  cdk synth && stream-scavenger run --cloud-assembly cdk.out --records 5000\n"
        "  stream-scavenger run --cloud-assembly cdk.out --endpoint-url http://127.0.0.1:8000\n"
        "  stream-scavenger run --cloud-assembly cdk.out --endpoint-url http://127.0.0.1:8000 \\\n"
        "      --table MessagesABC123=messages --table StagingDEF456=staging  # existing\n"
        "  stream-scavenger run --cloud-assembly cdk.out --endpoint-url http://127.0.0.1:8000 \\\n"
        "      --table MessagesABC123=messages --table StagingDEF456=staging \\\n"
        "      --on-failure-queue-url $DLQ --sqs-endpoint-url http://127.0.0.1:5000\n\n"
        "with --table, exit status 1 also when a batch was given up on, the function failed,\n"
        "or a fresh read after the checkpoints still finds records in the stream; a dry-run\n"
        "function reports what it would delete and keeps no checkpoint; a paused scavenger\n"
        "(Enabled: false) is refused: exit status 2, nothing deleted\n\n" + EXIT_CODES,
        formatter_class=raw,
    )
    source = run.add_mutually_exclusive_group(required=True)
    source.add_argument("--app", help="the command that synthesizes your app, e.g. 'python app.py'")
    source.add_argument("--cloud-assembly", help="an already synthesized cdk.out directory")
    run.add_argument("--records", type=int, default=200, help="matching records (default 200)")
    run.add_argument("--function", help="logical ID (prefix) of the function, with --table")
    run.add_argument(
        "--table",
        action="append",
        default=[],
        metavar="LOGICAL_ID=NAME",
        help="use existing tables on --endpoint-url instead of creating and filling new ones: "
        "drain the source's stream through the function and report",
    )
    checkpoint = run.add_mutually_exclusive_group()
    checkpoint.add_argument(
        "--checkpoint",
        metavar="FILE",
        help="with --table: the checkpoint, loaded at the start and saved after each batch, so "
        "a run stopped with Ctrl-C resumes after the last finished batch; kept per stream, "
        "function and configuration (default: a file named after them, in .stream-scavenger/ "
        "of the current directory; none in a dry run)",
    )
    checkpoint.add_argument(
        "--no-checkpoint",
        action="store_true",
        help="with --table: start at the mapping's StartingPosition, save no checkpoint",
    )
    on_failure = run.add_mutually_exclusive_group()
    on_failure.add_argument(
        "--on-failure-file",
        metavar="PATH",
        help="with --table: append Lambda's on-failure message for each batch given up on, "
        "as JSON lines (without this or --on-failure-queue-url, the checkpoint stays before "
        "what was given up on, so the next run delivers it again)",
    )
    on_failure.add_argument(
        "--on-failure-queue-url",
        metavar="URL",
        help="with --table: send the on-failure messages to this SQS queue (for redrive)",
    )
    run.add_argument(
        "--sqs-endpoint-url", metavar="URL", help="with --on-failure-queue-url: an SQS endpoint "
        "other than AWS's (otherwise your normal AWS setup)",
    )  # fmt: skip
    run.set_defaults(run=_run)

    invoke = commands.add_parser(
        "invoke",
        help="run the function once with a saved event and print its response",
        description="Invoke a synthesized scavenger once, in a subprocess with its own asset and "
        "environment, with an event from a file (for example one made by "
        "`sam local generate-event dynamodb update`), and print the response. A paused event "
        "source mapping (Enabled: false) does not stop it: the one event is yours to send.",
        epilog="examples:\n"
        "  stream-scavenger invoke --event event.json --cloud-assembly cdk.out\n"
        "  stream-scavenger invoke --event event.json --cloud-assembly cdk.out \\\n"
        "      --endpoint-url http://127.0.0.1:8000 --table StagingABC123=my-staging-table\n\n"
        + EXIT_CODES,
        formatter_class=raw,
    )
    invoke.add_argument("--event", required=True, help="a JSON file holding the Lambda event")
    invoke.add_argument("--cloud-assembly", required=True, help="the synthesized cdk.out")
    invoke.add_argument("--function", help="logical ID (prefix) of the function, if several")
    invoke.add_argument(
        "--table",
        action="append",
        default=[],
        metavar="LOGICAL_ID=NAME",
        help="the real name of a table on --endpoint-url (default: its logical ID)",
    )
    invoke.set_defaults(run=_invoke)

    redrive = commands.add_parser(
        "redrive",
        help="replay records given up on, from the on-failure queue",
        description="Read the on-failure messages (a shard and a sequence-number range each), "
        "re-read each range from the stream through its end record while the stream still "
        "holds it (24 hours), keep the records the event source mapping's filter criteria "
        "select, replay them through the scavenger's delete logic, and delete the message only "
        "after all of them succeeded; any other message is kept, with the reason. The "
        "scavenger's configuration and its mapping come from the deployed function "
        "(--function-name, with your normal AWS credentials) or a cloud assembly.",
        epilog="examples:\n"
        "  stream-scavenger redrive --queue-url https://sqs.eu-west-1.amazonaws.com/1234/dlq \\\n"
        "      --function-name my-stack-ScavengerFunction-AbC --dry-run\n"
        "  stream-scavenger redrive --queue-url $DLQ --cloud-assembly cdk.out \\\n"
        "      --endpoint-url http://127.0.0.1:8000 --sqs-endpoint-url http://127.0.0.1:5000\n\n"
        "exit status: 0 every message redriven (dry run: could be); 1 some message was kept "
        "(not\nunderstood, filters unknown, range unreadable, failed again, not deleted) or the "
        "queue was\nnot read out; 2 usage or set-up error",
        formatter_class=raw,
    )
    redrive.add_argument("--queue-url", required=True, help="the on-failure queue")
    config = redrive.add_mutually_exclusive_group(required=True)
    config.add_argument("--function-name", help="the deployed scavenger function")
    config.add_argument("--cloud-assembly", help="a synthesized cdk.out holding the scavenger")
    redrive.add_argument("--function", help="logical ID (prefix), with --cloud-assembly")
    redrive.add_argument(
        "--function-arn",
        metavar="ARN",
        help="with --cloud-assembly: the deployed function's ARN; only its messages are "
        "redriven (default: a message's function name must hold the function's logical ID, "
        "as CloudFormation names functions: <stack>-<logical ID>-<suffix>)",
    )
    redrive.add_argument(
        "--table", action="append", default=[], metavar="LOGICAL_ID=NAME",
        help="a table's real name, with --cloud-assembly (default: its logical ID)",
    )  # fmt: skip
    redrive.add_argument("--dry-run", action="store_true", help="read and count; change nothing")
    redrive.add_argument("--sqs-endpoint-url", help="an SQS endpoint other than AWS's")
    redrive.set_defaults(run=_redrive)

    backfill = commands.add_parser(
        "backfill",
        help="scavenge what the stream can no longer deliver, from a scan of the source",
        description="Scan the source table (a parallel Scan) and treat each item as the stream "
        "record the scavenger would have received when it was written: INSERT with the item as "
        "its new image (MODIFY for a scavenger acting on MODIFY only: a filter on the old image "
        "cannot match). Keep the records the event source mapping's filter criteria select and "
        "delete their keys through the function's own code (key mapping, templates, several "
        "targets, 25 keys a request, pacing, retries). For adopting the scavenger on a table "
        "that already holds items, or after it was broken for more than the stream's 24 hours. "
        "A REMOVE-only scavenger cannot be backfilled (exit status 2). The configuration comes "
        "from your app, a cloud assembly, or the deployed function (--function-name); tables "
        "are on AWS (your normal credentials) or --endpoint-url. --deployed runs the "
        "backfill on AWS instead, in the state machine of StreamScavenger(backfill=True).",
        epilog="examples:\n"
        "  stream-scavenger backfill --cloud-assembly cdk.out --dry-run \\\n"
        "      --table MessagesABC123=messages --table StagingDEF456=staging\n"
        "  stream-scavenger backfill --function-name my-stack-ScavengerFunction-AbC \\\n"
        "      --segments 16 --max-write-units 500 --max-read-units 1000\n"
        "  stream-scavenger backfill --cloud-assembly cdk.out --endpoint-url http://127.0.0.1:8000 "
        "\\\n      --table MessagesABC123=messages --table StagingDEF456=staging\n"
        "  stream-scavenger backfill --deployed my-stack-ScavengerBackfillStateMachine-AbC\n\n"
        "exit status: 0 every selected item's keys deleted (dry run: counted); 1 some could not "
        "be\ndeleted (named by segment, page and item), or the execution (--deployed) failed, "
        "was\naborted or timed out; 2 usage or set-up error (an option out of range, a "
        "REMOVE-only\nscavenger, a checkpoint of another backfill, a table or state machine not "
        "found); 130\ninterrupted (the checkpoint kept: the same command resumes; --deployed: "
        "the execution goes on)",
        formatter_class=raw,
    )
    config = backfill.add_mutually_exclusive_group(required=True)
    config.add_argument("--app", help="the command that synthesizes your app, e.g. 'python app.py'")
    config.add_argument("--cloud-assembly", help="an already synthesized cdk.out directory")
    config.add_argument(
        "--function-name", help="the deployed scavenger function (its environment and mapping)"
    )
    config.add_argument(
        "--deployed", metavar="STATE_MACHINE|EXECUTION",
        help="run the backfill on AWS: the state machine of backfill=True (ARN or name) starts "
        "an execution; one of its executions (ARN) is followed while it runs, redriven if it "
        "failed, was aborted or timed out (its unfinished segments go on), reported if it "
        "succeeded; the progress bar follows it, Ctrl-C leaves it running",
    )  # fmt: skip
    backfill.add_argument("--function", help="logical ID (prefix) of the function, if several")
    backfill.add_argument(
        "--table", action="append", default=[], metavar="LOGICAL_ID=NAME",
        help="a table's real name, with --app or --cloud-assembly (default: the template's "
        "TableName, else its logical ID)",
    )  # fmt: skip
    backfill.add_argument(
        "--segments", type=int, metavar="N",
        help="Scan segments (TotalSegments), 1..1,000,000 (default 4); at most "
        f"{MAX_BACKFILL_WORKERS} are scanned at once",
    )  # fmt: skip
    backfill.add_argument(
        "--page-size", type=int, metavar="N",
        help="items per Scan page (Limit), 1..10,000 (default 1000; a read budget may lower "
        "it; DynamoDB ends a page at 1 MB)",
    )  # fmt: skip
    backfill.add_argument(
        "--max-write-units", type=float, metavar="N",
        help="write units per second for the deletes, over all segments, more than 0 "
        "(default: no limit but the pacing on throttles), so the tables' other writers keep "
        "their capacity",
    )  # fmt: skip
    backfill.add_argument(
        "--max-read-units", type=float, metavar="N",
        help="read units per second for the scan, over all segments, more than 0 (default: no "
        "limit); pages are made small enough to fit",
    )  # fmt: skip
    backfill.add_argument(
        "--dry-run", action="store_true",
        help="scan and count (items, filtered out, matched per target, keys, unmappable); "
        "delete nothing, keep no checkpoint",
    )  # fmt: skip
    backfill_checkpoint = backfill.add_mutually_exclusive_group()
    backfill_checkpoint.add_argument(
        "--checkpoint", metavar="FILE",
        help="each segment's position, saved after each page whose deletes are finished, so an "
        "interrupted backfill resumes (default: .stream-scavenger/backfill-<table>-<function>-"
        "<configuration hash>.json); one made for other --segments or configuration is refused",
    )  # fmt: skip
    backfill_checkpoint.add_argument(
        "--no-checkpoint", action="store_true", help="start from the beginning, save nothing"
    )
    backfill.add_argument(
        "--endpoint-url", help="a DynamoDB endpoint other than AWS's (e.g. DynamoDB Local)"
    )
    backfill.set_defaults(run=_backfill)

    for command in (demo, run, invoke):
        command.add_argument(
            "--endpoint-url",
            help="use this DynamoDB endpoint instead of starting DynamoDB Local",
        )
    redrive.add_argument(
        "--endpoint-url", help="a DynamoDB endpoint other than AWS's (e.g. DynamoDB Local)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``stream-scavenger`` console script."""
    args = build_parser().parse_args(argv)
    try:
        code: int = args.run(args)
    except (DynamoDBLocalError, ValueError, OSError) as err:
        print(f"stream-scavenger: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("stream-scavenger: interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":
    raise SystemExit(main())
