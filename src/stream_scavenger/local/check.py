"""End-to-end check of a synthesized scavenger on DynamoDB Local.

For each scavenger of the assembly: create the stack's tables as the template
defines them, fill the target with items that should go and items that must
stay, write the matching source items (as the selected events require), run
the local event source mapping with the function's own asset, and verify that
exactly the matching target items are gone.
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
    ENV_TARGET_TABLE,
    ScavengerConfig,
    is_template,
    template_attributes,
)
from ..runtime.scavenger.records import map_record
from .assembly import FunctionDef, StackDef, TableDef, load_assembly
from .invoker import SubprocessInvoker
from .runner import LocalEventSourceMapping, RunStats, create_table, table_names_for


@dataclass
class CheckReport:
    """The outcome of one scavenger's check."""

    stack: str
    function: str
    records: int
    deleted: int
    still_there: int
    unrelated_kept: int
    unrelated_total: int
    run: RunStats
    #: Seconds the local event source mapping took to drain the stream (not the set-up).
    seconds: float
    #: The function's own metrics, summed over the run (BatchWriteRequests, Retries, ...).
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Exactly the matching items are gone, and nothing was given up on."""
        return (
            self.deleted == self.records
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


def _items(
    source: TableDef, target: TableDef, config: ScavengerConfig, count: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Source items, the target items they name, and unrelated target items."""
    target_types = dict(_key_schema(target))
    source_types = dict(_key_schema(source))
    sources, matching, unrelated = [], [], []
    for i in range(count):
        item = {name: _value(t, "src", i) for name, t in source_types.items()}
        for target_attr, mapped in config.key_mapping.items():
            if is_template(mapped):
                for attr in template_attributes(mapped):
                    item.setdefault(attr, _value(source_types.get(attr, "S"), "k", i))
            else:
                item[mapped] = _value(target_types[target_attr], "k", i)
        # The key the scavenger must delete for this item, by the runtime's own mapping rules.
        key = map_record({"eventName": "INSERT", "dynamodb": {"NewImage": item}}, config).request
        sources.append(item)
        matching.append(key)
        unrelated.append({a: _value(t, "u", i) for a, t in target_types.items()})
    return sources, matching, unrelated


def _batch_put(client: Any, table: str, items: list[dict[str, Any]]) -> None:
    for start in range(0, len(items), 25):
        requests = [{"PutRequest": {"Item": item}} for item in items[start : start + 25]]
        pending: dict[str, Any] = {table: requests}
        while pending:
            pending = client.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}


def _write_source(
    client: Any, table: str, items: list[dict[str, Any]], events: frozenset[str], keys: list[str]
) -> None:
    """Write the source items so that each produces a record of a selected event."""
    _batch_put(client, table, items)
    if "INSERT" in events:
        return
    if "MODIFY" in events:
        _batch_put(client, table, [{**item, "touched": {"BOOL": True}} for item in items])
        return
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
    target_ref = function.environment.get(ENV_TARGET_TABLE, {})
    target_id = target_ref.get("Ref") if isinstance(target_ref, dict) else None
    if target_id not in stack.tables:
        raise ValueError(
            f"{stack.name}/{function.logical_id}: the target table is not in the stack"
        )
    started = time.monotonic()
    names = table_names_for(
        stack.tables, prefix=f"check{os.getpid()}{int(started * 1000) % 100000}-"
    )
    stream_arns = {lid: create_table(ddb, names[lid], table) for lid, table in stack.tables.items()}
    environment = function.resolved_environment(names)
    config = ScavengerConfig.from_env(environment)
    source, target = stack.tables[function.mapping.source_table], stack.tables[target_id]
    source_items, matching, unrelated = _items(source, target, config, records)
    _batch_put(ddb, names[target_id], matching + unrelated)
    _write_source(
        ddb,
        names[source.logical_id],
        source_items,
        config.event_names,
        [a for a, _ in _key_schema(source)],
    )
    with SubprocessInvoker(
        function.asset_dir,
        function.handler,
        {**environment, "AWS_ENDPOINT_URL_DYNAMODB": endpoint_url},
        function_name=function.logical_id,
        timeout_s=function.timeout_s,
        stderr=sys.stderr if os.environ.get("SCAVENGER_CHECK_LOGS") else subprocess.DEVNULL,
    ) as invoker:
        mapping = LocalEventSourceMapping(
            streams,
            stream_arns[source.logical_id],
            invoker.invoke,
            function.mapping.properties,
            on_batch=on_batch,
        )
        run_started = time.monotonic()
        run = mapping.run()
        seconds = time.monotonic() - run_started
        metrics = dict(invoker.metrics)
    still_there = _count_present(ddb, names[target_id], matching)
    return CheckReport(
        stack=stack.name,
        function=function.logical_id,
        records=records,
        deleted=records - still_there,
        still_there=still_there,
        unrelated_kept=_count_present(ddb, names[target_id], unrelated),
        unrelated_total=len(unrelated),
        run=run,
        seconds=seconds,
        metrics=metrics,
    )


def check_assembly(
    cdk_out: Path | str,
    endpoint_url: str,
    clients: tuple[Any, Any],
    records: int = 200,
    on_batch: Callable[[int], None] | None = None,
) -> list[CheckReport]:
    """Check every scavenger of a synthesized assembly."""
    stacks = load_assembly(cdk_out)
    if not stacks:
        raise ValueError(f"no stream-scavenger function found in {cdk_out}")
    return [
        check_function(stack, function, endpoint_url, clients, records, on_batch)
        for stack in stacks
        for function in stack.functions
    ]


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
