"""The function's own asset, as synthesized, run against DynamoDB Local's stream."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_dynamodb as dynamodb

from stream_scavenger import StreamScavenger
from stream_scavenger.local.assembly import load_assembly
from stream_scavenger.local.event_source_mapping import (
    LocalEventSourceMapping,
    create_table,
    table_names_for,
)
from stream_scavenger.local.invoker import SubprocessInvoker
from stream_scavenger.local.scenario import check_assembly
from testkit.tables import scan_keys

pytestmark = pytest.mark.ddb  # end to end: the example app synthesized in a subprocess
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def example_assembly(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``examples/app.py`` synthesized, as the README's main command does."""
    out = tmp_path_factory.mktemp("example") / "cdk.out"
    subprocess.run(
        [sys.executable, str(ROOT / "examples" / "app.py")],
        env={**os.environ, "CDK_OUTDIR": str(out)},
        check=True,
        capture_output=True,
    )
    return out


def test_example_app_deletes_exactly_the_matching_items(
    example_assembly: Path, ddb_local: Any, ddb: Any, ddb_streams: Any
) -> None:
    (report,) = check_assembly(
        example_assembly, ddb_local.endpoint_url, (ddb, ddb_streams), records=450
    )

    assert (report.deleted, report.still_there) == (450, 0)
    assert report.unrelated_kept == report.unrelated_total == 450
    assert report.run.records_read == 450
    assert report.run.invocations == 5  # batch size 100
    assert report.run.given_up == [] and report.run.function_errors == 0
    assert report.ok


def test_asset_holds_only_the_runtime(example_assembly: Path) -> None:
    """The asset is the runtime's source files: no tests, no ``__pycache__``, nothing else."""
    (stack,) = load_assembly(example_assembly)
    (function,) = stack.functions

    def files(root: Path) -> list[str]:
        return sorted(
            p.relative_to(root).as_posix()
            for p in root.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
        )

    shipped = files(function.asset_dir)
    assert shipped == files(ROOT / "src" / "stream_scavenger" / "runtime")
    assert all(name.startswith("scavenger/") and name.endswith(".py") for name in shipped)
    assert {"scavenger/__init__.py", "scavenger/handler.py", "scavenger/config.py"} <= set(shipped)
    assert not any("__pycache__" in p.parts for p in function.asset_dir.rglob("*"))


class NonKeyModifyRemoveStack(cdk.Stack):
    """Target keyed by a renamed, non-key attribute of the source; MODIFY and REMOVE select."""

    def __init__(self, scope: cdk.App) -> None:
        super().__init__(scope, "NonKey")
        orders = dynamodb.Table(
            self,
            "Orders",
            partition_key=dynamodb.Attribute(name="orderId", type=dynamodb.AttributeType.STRING),
        )
        holds = dynamodb.Table(
            self,
            "Holds",
            partition_key=dynamodb.Attribute(name="holdId", type=dynamodb.AttributeType.BINARY),
            sort_key=dynamodb.Attribute(name="slot", type=dynamodb.AttributeType.NUMBER),
        )
        self.scavenger = StreamScavenger(
            self,
            "Scavenger",
            source_table=orders,
            target_table=holds,
            key_mapping={"holdId": "holdRef", "slot": "slot"},
            event_names=["MODIFY", "REMOVE"],
            batch_size=7,
        )


def test_non_key_mapping_with_modify_and_remove_end_to_end(
    tmp_path: Path, ddb_local: Any, ddb: Any, ddb_streams: Any
) -> None:
    app = cdk.App(outdir=str(tmp_path / "cdk.out"))
    stack = NonKeyModifyRemoveStack(app)
    app.synth()
    assert stack.scavenger.stream_view_type == dynamodb.StreamViewType.NEW_AND_OLD_IMAGES

    (stack_def,) = load_assembly(tmp_path / "cdk.out")
    (function,) = stack_def.functions
    names = table_names_for(stack_def.tables, prefix="e2e-")
    arns = {lid: create_table(ddb, names[lid], table) for lid, table in stack_def.tables.items()}
    orders = names[next(lid for lid in names if lid.startswith("Orders"))]
    holds = names[next(lid for lid in names if lid.startswith("Holds"))]

    def hold(i: int) -> bytes:  # distinctive values, so that a leak into the logs shows
        return f"hold-secret-{i}".encode()

    for i in range(20):
        ddb.put_item(TableName=holds, Item={"holdId": {"B": hold(i)}, "slot": {"N": str(i)}})
    for i in range(20):  # INSERT: not selected, deletes nothing
        ddb.put_item(
            TableName=orders,
            Item={
                "orderId": {"S": f"order-secret-{i}"},
                "holdRef": {"B": hold(i)},
                "slot": {"N": str(i)},
            },
        )
    for i in range(0, 5):  # MODIFY: deletes h0..h4 (read from NewImage)
        ddb.update_item(
            TableName=orders,
            Key={"orderId": {"S": f"order-secret-{i}"}},
            UpdateExpression="SET paid = :t",
            ExpressionAttributeValues={":t": {"BOOL": True}},
        )
    for i in range(5, 12):  # REMOVE: deletes h5..h11 (read from OldImage)
        ddb.delete_item(TableName=orders, Key={"orderId": {"S": f"order-secret-{i}"}})

    log = tmp_path / "function.log"  # the function's log stream, as the runtime client wrote it
    with (
        log.open("wb") as sink,
        SubprocessInvoker.for_function(
            function, names, ddb_local.endpoint_url, stderr=sink
        ) as invoker,
    ):
        run = LocalEventSourceMapping(
            ddb_streams,
            arns[next(lid for lid in names if lid.startswith("Orders"))],
            invoker.invoke,
            function.mapping.properties,
        ).run()

    assert scan_keys(ddb, holds, ["slot"]) == {(str(i),) for i in range(12, 20)}
    assert (
        run.records_read == 32 and run.records_filtered_out == 20
    )  # INSERTs never reach the function
    assert run.invocations == 2 and run.given_up == []  # 12 records, batch size 7
    text = log.read_text()
    lines = [json.loads(line) for line in text.splitlines()]  # each line is JSON
    emf = [line for line in lines if "_aws" in line]
    assert [(d["RecordsReceived"], d["KeysDeleted"]) for d in emf] == [(7, 7), (5, 5)]
    summaries = [line for line in lines if line.get("message") == "scavenged"]
    assert [(s["level"], bool(s["requestId"])) for s in summaries] == [("INFO", True)] * 2
    values = [f"order-secret-{i}" for i in range(20)] + [
        v for i in range(20) for v in (hold(i).decode(), base64.b64encode(hold(i)).decode())
    ]
    assert [v for v in values if v in text] == [], "an item value reached the function's logs"


def test_handler_runs_without_the_library_on_its_path(example_assembly: Path) -> None:
    """The asset imports nothing of stream_scavenger: it must work on its own in Lambda."""
    (stack,) = load_assembly(example_assembly)
    (function,) = stack.functions
    code = (
        "import sys, scavenger.handler; "
        "print(sorted(m for m in sys.modules if m.startswith('stream_scavenger')))"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-I",
            "-c",
            f"import sys; sys.path.insert(0, {str(function.asset_dir)!r}); {code}",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == "[]"
