"""End-to-end check of a synthesized scavenger on DynamoDB Local.

For each scavenger of the assembly: create the stack's tables as the template
defines them, fill each target with items that should go and items that must
stay, write the matching source items (as the selected events require), run
the local event source mapping with the function's own asset, and verify that
exactly the matching target items are gone, in every target. A scavenger whose mapping
is paused (``Enabled: false``) is skipped: deployed, it reads nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..runtime.scavenger.config import (
    ScavengerConfig,
    TargetConfig,
    is_template,
    template_attributes,
)
from ..runtime.scavenger.records import map_record
from .assembly import AssemblyError, FunctionDef, StackDef, TableDef, load_assembly
from .event_source_mapping import LocalEventSourceMapping, RunStats, create_table, table_names_for
from .invoker import SubprocessInvoker


@dataclass
class CheckReport:
    """The outcome of one scavenger's check."""

    stack: str
    function: str
    records: int
    #: Keys the scavenger must delete: one per record in each target.
    keys: int
    deleted: int
    still_there: int
    unrelated_kept: int
    unrelated_total: int
    run: RunStats
    #: Seconds the local event source mapping took to drain the stream (not the set-up).
    seconds: float
    #: The function's own metrics, summed over the run (BatchWriteRequests, Retries, ...).
    metrics: dict[str, float] = field(default_factory=dict)
    #: Per target table (logical ID): keys deleted, keys to delete.
    targets: dict[str, tuple[int, int]] = field(default_factory=dict)
    #: Skipped: the mapping is paused (``Enabled: false``), so nothing was run.
    paused: bool = False

    @property
    def ok(self) -> bool:
        """Exactly the matching items are gone, and nothing was given up on (or paused)."""
        return self.paused or (
            self.deleted == self.keys
            and self.still_there == 0
            and self.unrelated_kept == self.unrelated_total
            and not self.run.given_up
        )


def _key_schema(table: TableDef) -> list[tuple[str, str]]:
    types = {
        d["AttributeName"]: d["AttributeType"] for d in table.properties["AttributeDefinitions"]
    }
    ordered = sorted(table.properties["KeySchema"], key=lambda k: k["KeyType"] != "HASH")
    return [(k["AttributeName"], types[k["AttributeName"]]) for k in ordered]


def _value(type_: str, tag: str, i: int) -> Any:
    if type_ == "N":
        return {"N": str(i if tag == "k" else -(i + 1))}
    if type_ == "B":
        return {"B": f"{tag}{i}".encode()}
    return {"S": f"{tag}{i}"}


def _source_items(
    source: TableDef, targets: list[tuple[TargetConfig, TableDef]], count: int
) -> list[dict[str, Any]]:
    """Source items that carry every attribute the targets' key mappings read."""
    source_types = dict(_key_schema(source))
    items = []
    for i in range(count):
        item = {name: _value(t, "src", i) for name, t in source_types.items()}
        for config, table in targets:
            target_types = dict(_key_schema(table))
            for target_attr, mapped in config.key_mapping.items():
                if is_template(mapped):
                    for attr in template_attributes(mapped):
                        item.setdefault(attr, _value(source_types.get(attr, "S"), "k", i))
                else:
                    item[mapped] = _value(target_types[target_attr], "k", i)
        items.append(item)
    return items


def _events_to_write(targets: list[TargetConfig]) -> list[str]:
    """The fewest events (in write order) that give every target a record it acts on."""
    events = {"INSERT"}
    for target in targets:
        if not target.event_names & events:
            events.add("MODIFY" if "MODIFY" in target.event_names else "REMOVE")
    return [e for e in ("INSERT", "MODIFY", "REMOVE") if e in events]


def _target_items(
    table: TableDef, config: TargetConfig, sources: list[dict[str, Any]], event_name: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The target keys the source items name (by the runtime's own rules), and unrelated ones."""
    types = _key_schema(table)
    matching, unrelated = [], []
    for i, item in enumerate(sources):
        record = {"eventName": event_name, "dynamodb": {"NewImage": item, "OldImage": item}}
        matching.append(map_record(record, config).request)
        unrelated.append({a: _value(t, "u", i) for a, t in types})
    return matching, unrelated


def _batch_put(client: Any, table: str, items: list[dict[str, Any]]) -> None:
    for start in range(0, len(items), 25):
        requests = [{"PutRequest": {"Item": item}} for item in items[start : start + 25]]
        pending: dict[str, Any] = {table: requests}
        while pending:
            pending = client.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}


def _write_source(
    client: Any, table: str, items: list[dict[str, Any]], events: list[str], keys: list[str]
) -> None:
    """Write the source items so that each produces a record of each of ``events``."""
    _batch_put(client, table, items)
    if "MODIFY" in events:
        _batch_put(client, table, [{**item, "touched": {"BOOL": True}} for item in items])
    if "REMOVE" in events:
        for item in items:
            client.delete_item(TableName=table, Key={k: item[k] for k in keys})


def _count_present(client: Any, table: str, keys: list[dict[str, Any]]) -> int:
    present = 0
    for start in range(0, len(keys), 100):
        chunk = keys[start : start + 100]
        pending: dict[str, Any] = {table: {"Keys": chunk}}
        while pending:
            response = client.batch_get_item(RequestItems=pending)
            present += len(response["Responses"].get(table, []))
            pending = response.get("UnprocessedKeys") or {}
    return present


def paused_reason(stack: StackDef, function: FunctionDef) -> str | None:
    """Why the function is not run, naming its construct, or None when its mapping is on."""
    if function.mapping is None or function.mapping.enabled:
        return None
    where = function.mapping.construct_path or stack.name
    return (
        f"{where} (function {function.logical_id}): its event source mapping is paused "
        "(Enabled: false); deployed, it reads nothing"
    )


def runnable(stacks: list[StackDef], cdk_out: Path | str) -> None:
    """Raise ValueError when the assembly has no scavenger, or only paused ones."""
    functions = [(stack, f) for stack in stacks for f in stack.functions]
    if not functions:
        raise ValueError(f"no stream-scavenger function found in {cdk_out}")
    if all(paused_reason(stack, f) for stack, f in functions):
        raise ValueError(
            f"every stream-scavenger function in {cdk_out} has its event source mapping "
            "paused (Enabled: false): deployed, none reads its stream, so nothing was run"
        )


def check_function(
    stack: StackDef,
    function: FunctionDef,
    endpoint_url: str,
    clients: tuple[Any, Any],
    records: int,
    on_batch: Callable[[int], None] | None = None,
) -> CheckReport:
    """Run the end-to-end check for one scavenger function."""
    ddb, streams = clients
    if function.mapping is None or function.mapping.source_table not in stack.tables:
        raise ValueError(
            f"{stack.name}/{function.logical_id}: no event source mapping on a table of the stack"
        )
    started = time.monotonic()
    names = table_names_for(
        stack.tables, prefix=f"check{os.getpid()}{int(started * 1000) % 100000}-"
    )
    try:
        config = ScavengerConfig.from_env(function.resolved_environment(names))
    except AssemblyError:
        config = None
    logical_ids = {name: lid for lid, name in names.items()}
    if config is None or any(t.table not in logical_ids for t in config.targets):
        raise ValueError(
            f"{stack.name}/{function.logical_id}: the target table is not in the stack"
        )
    target_ids = [logical_ids[t.table] for t in config.targets]
    stream_arns = {lid: create_table(ddb, names[lid], table) for lid, table in stack.tables.items()}
    source = stack.tables[function.mapping.source_table]
    targets = [(t, stack.tables[lid]) for t, lid in zip(config.targets, target_ids, strict=True)]
    source_items = _source_items(source, targets, records)
    events = _events_to_write(list(config.targets))
    expected = {}
    for lid, (target, table) in zip(target_ids, targets, strict=True):
        event_name = next(e for e in events if e in target.event_names)
        expected[lid] = _target_items(table, target, source_items, event_name)
        _batch_put(ddb, names[lid], expected[lid][0] + expected[lid][1])
    _write_source(
        ddb,
        names[source.logical_id],
        source_items,
        events,
        [a for a, _ in _key_schema(source)],
    )
    with SubprocessInvoker.for_function(
        function,
        names,
        endpoint_url,
        stderr=sys.stderr if os.environ.get("SCAVENGER_CHECK_LOGS") else subprocess.DEVNULL,
    ) as invoker:
        mapping = LocalEventSourceMapping(
            streams,
            stream_arns[source.logical_id],
            invoker.invoke,
            # The tables are new: a mapping created with them, even at LATEST, sees every record.
            {**function.mapping.properties, "StartingPosition": "TRIM_HORIZON"},
            on_batch=on_batch,
        )
        run_started = time.monotonic()
        run = mapping.run()
        seconds = time.monotonic() - run_started
        metrics = dict(invoker.metrics)
    per_target, kept = {}, 0
    for lid, (matching, unrelated) in expected.items():
        per_target[lid] = (len(matching) - _count_present(ddb, names[lid], matching), len(matching))
        kept += _count_present(ddb, names[lid], unrelated)
    deleted = sum(d for d, _ in per_target.values())
    keys = sum(n for _, n in per_target.values())
    return CheckReport(
        stack=stack.name,
        function=function.logical_id,
        records=records,
        keys=keys,
        deleted=deleted,
        still_there=keys - deleted,
        unrelated_kept=kept,
        unrelated_total=sum(len(u) for _, u in expected.values()),
        run=run,
        seconds=seconds,
        metrics=metrics,
        targets=per_target,
    )


def check_assembly(
    cdk_out: Path | str,
    endpoint_url: str,
    clients: tuple[Any, Any],
    records: int = 200,
    on_batch: Callable[[int], None] | None = None,
) -> list[CheckReport]:
    """Check every scavenger of a synthesized assembly; a paused one gets a report marked
    ``paused`` and is not run (ValueError when all are)."""
    stacks = load_assembly(cdk_out)
    runnable(stacks, cdk_out)
    reports = []
    for stack in stacks:
        for function in stack.functions:
            if paused_reason(stack, function):
                reports.append(_paused_report(stack, function))
            else:
                reports.append(
                    check_function(stack, function, endpoint_url, clients, records, on_batch)
                )
    return reports


def _paused_report(stack: StackDef, function: FunctionDef) -> CheckReport:
    return CheckReport(
        stack=stack.name,
        function=function.logical_id,
        records=0,
        keys=0,
        deleted=0,
        still_there=0,
        unrelated_kept=0,
        unrelated_total=0,
        run=RunStats(),
        seconds=0.0,
        paused=True,
    )


def example_app() -> Path:
    """The bundled example app: packaged into the wheel, or examples/app.py of a checkout."""
    packaged = Path(__file__).with_name("example_app.py")
    if packaged.exists():
        return packaged
    checkout = Path(__file__).resolve().parents[3] / "examples" / "app.py"
    if checkout.exists():
        return checkout
    raise ValueError("the bundled example app is missing from this installation")


def synthesize(app_command: list[str] | str, outdir: Path | None = None) -> Path:
    """Run a CDK app (``python app.py``, as ``cdk synth`` would) into a cloud assembly."""
    out = outdir or Path(tempfile.mkdtemp(prefix="stream-scavenger-")) / "cdk.out"
    result = subprocess.run(
        app_command,
        shell=isinstance(app_command, str),
        env={**os.environ, "CDK_OUTDIR": str(out)},
        capture_output=True,
        text=True,
    )
    if result.returncode != 0 or not (out / "manifest.json").exists():
        tail = "\n".join(line for line in result.stderr.splitlines() if not line.startswith("!!"))
        raise ValueError(f"synthesizing {app_command!r} failed:\n{tail[-2000:]}")
    return out
