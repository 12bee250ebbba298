"""A paused mapping (``StreamScavenger(enabled=False)``, ``Enabled: false``) in the local
tooling: deployed, Lambda reads nothing, so ``run`` never deletes through it."""

from __future__ import annotations

import itertools
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from stream_scavenger.cli import main
from stream_scavenger.local.assembly import MappingDef, StackDef, load_assembly
from stream_scavenger.local.scenario import synthesize
from testkit.events import record

#: Two scavengers on one source, the second paused.
APP = """
import aws_cdk as cdk
from aws_cdk import aws_dynamodb as dynamodb
from stream_scavenger import StreamScavenger

app = cdk.App()
stack = cdk.Stack(app, "Paused")
key = {"partition_key": dynamodb.Attribute(name="id", type=dynamodb.AttributeType.STRING)}
source = dynamodb.Table(stack, "Source", **key)
on, off = dynamodb.Table(stack, "OnTarget", **key), dynamodb.Table(stack, "OffTarget", **key)
StreamScavenger(stack, "On", source_table=source, target_table=on)
StreamScavenger(stack, "Off", source_table=source, target_table=off, enabled=False)
app.synth()
"""

PAUSED = "its event source mapping is paused (Enabled: false); deployed, it reads nothing"


@pytest.fixture(scope="module")
def assembly(tmp_path_factory: pytest.TempPathFactory) -> Path:
    app = tmp_path_factory.mktemp("paused") / "paused_app.py"
    app.write_text(APP)
    return synthesize([sys.executable, str(app)])


@pytest.fixture(scope="module")
def all_paused(assembly: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same assembly with the other mapping paused too (its template edited)."""
    copy = tmp_path_factory.mktemp("all-paused") / "cdk.out"
    shutil.copytree(assembly, copy)
    template_file = copy / "Paused.template.json"
    template = json.loads(template_file.read_text())
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Lambda::EventSourceMapping":
            resource["Properties"]["Enabled"] = False
    template_file.write_text(json.dumps(template))
    return copy


def table_names(ddb: Any) -> set[str]:
    """Every table (ListTables answers 100 at most a page; the suite's DynamoDB Local holds
    more)."""
    return {n for page in ddb.get_paginator("list_tables").paginate() for n in page["TableNames"]}


def stack_of(assembly: Path) -> StackDef:
    (stack,) = load_assembly(assembly)
    return stack


def ids(assembly: Path) -> dict[str, str]:
    """Logical ID less its 8-character hash -> logical ID (OnFunction, OffFunction, Source,
    OnTarget, OffTarget)."""
    stack = stack_of(assembly)
    return {lid[:-8]: lid for lid in [*(f.logical_id for f in stack.functions), *stack.tables]}


@pytest.mark.parametrize(
    ("enabled", "expected"),
    [(None, True), (True, True), (False, False), ("false", False), ("True", True),
     ({"Ref": "Switch"}, True), ({"Fn::If": ["C", True, False]}, True)],
)  # fmt: skip
def test_enabled_reads_the_template_as_cloudformation_defaults_it(
    enabled: Any, expected: bool
) -> None:
    """Only a literal false pauses; a token cannot be resolved here and counts as enabled."""
    properties = {} if enabled is None else {"Enabled": enabled}
    assert MappingDef("M", properties, "Source").enabled is expected


@pytest.mark.ddb  # synthesizes an app in a subprocess (~9 s)
def test_the_assembly_says_which_mapping_is_paused_and_whose(assembly: Path) -> None:
    stack = stack_of(assembly)
    mappings = {f.logical_id[:-8]: f.mapping for f in stack.functions}  # less the hash
    on, off = mappings["OnFunction"], mappings["OffFunction"]
    assert on is not None and off is not None
    assert on.enabled and not off.enabled
    assert (on.construct_path, off.construct_path) == ("Paused/On", "Paused/Off")


def test_run_skips_the_paused_scavenger_and_checks_the_other(
    assembly: Path, ddb_local: Any, ddb: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    before = table_names(ddb)
    code = main([
        "run", "--cloud-assembly", str(assembly), "--records", "20",
        "--endpoint-url", ddb_local.endpoint_url,
    ])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, out + err
    rows = {line.split()[0]: line.split() for line in out.strip().splitlines()[1:]}
    on, off = (f"Paused/{ids(assembly)[name]}" for name in ("OnFunction", "OffFunction"))
    assert rows[on][1:3] == ["20", "20/20"] and rows[on][-1] == "OK"
    assert rows[off][1:] == ["-"] * 9 + ["paused"]
    assert f"skipped: Paused/Off (function {ids(assembly)['OffFunction']}): {PAUSED}" in err
    # Only the enabled one ran: one set of the stack's three tables was made, not two.
    assert len(table_names(ddb) - before) == 3


def test_run_with_only_paused_scavengers_is_an_error(
    all_paused: Path, ddb_local: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["run", "--cloud-assembly", str(all_paused), "--endpoint-url", ddb_local.endpoint_url]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "every stream-scavenger function in" in err
    assert "paused (Enabled: false): deployed, none reads its stream, so nothing was run" in err


# ---- run --table: existing tables ------------------------------------------------------------

_runs = itertools.count()


def existing(ddb: Any, assembly: Path, count: int) -> dict[str, Any]:
    """The stack's tables under new names: the source written (so its stream holds ``count``
    INSERT records), both targets holding the matching items."""
    stack, logical = stack_of(assembly), ids(assembly)
    n = next(_runs)
    names = {name: f"paused{n}-{name}" for name in ("Source", "OnTarget", "OffTarget")}
    key = {"KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
           "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}],
           "BillingMode": "PAY_PER_REQUEST"}  # fmt: skip
    view = stack.tables[logical["Source"]].stream_view_type
    ddb.create_table(
        TableName=names["Source"],
        StreamSpecification={"StreamEnabled": True, "StreamViewType": view},
        **key,
    )
    for target in ("OnTarget", "OffTarget"):
        ddb.create_table(TableName=names[target], **key)
    for i in range(count):
        for table in names.values():
            ddb.put_item(TableName=table, Item={"id": {"S": f"p{i}"}})
    return {
        "names": names,
        "args": [arg for name, table in names.items()
                 for arg in ("--table", f"{logical[name]}={table}")],
    }  # fmt: skip


def left_in(ddb: Any, table: str) -> int:
    return int(ddb.scan(TableName=table, Select="COUNT")["Count"])


def test_run_table_refuses_a_paused_scavenger_and_deletes_nothing(
    assembly: Path, ddb_local: Any, ddb: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)  # where a checkpoint would go
    tables = existing(ddb, assembly, 5)
    code = main([
        "run", "--cloud-assembly", str(assembly), "--endpoint-url", ddb_local.endpoint_url,
        "--function", "OffFunction", *tables["args"],
    ])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 2
    off = ids(assembly)["OffFunction"]
    assert err == f"stream-scavenger: Paused/Off (function {off}): {PAUSED}; nothing was deleted\n"
    assert "records read" not in out
    assert left_in(ddb, tables["names"]["OffTarget"]) == 5
    assert left_in(ddb, tables["names"]["OnTarget"]) == 5
    assert not (tmp_path / ".stream-scavenger").exists()


def test_run_table_drains_through_the_enabled_scavenger_only(
    assembly: Path, ddb_local: Any, ddb: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """Without --function, the paused one is named and left out: the other is the one."""
    monkeypatch.chdir(tmp_path)
    tables = existing(ddb, assembly, 5)
    code = main([
        "run", "--cloud-assembly", str(assembly), "--endpoint-url", ddb_local.endpoint_url,
        *tables["args"],
    ])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert "records read: 5" in out and "keys deleted: 5" in out
    assert f"skipped: Paused/Off (function {ids(assembly)['OffFunction']}): {PAUSED}" in err
    assert left_in(ddb, tables["names"]["OnTarget"]) == 0
    assert left_in(ddb, tables["names"]["OffTarget"]) == 5


def test_invoke_still_runs_a_paused_scavenger(
    assembly: Path, ddb_local: Any, ddb: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One event, given explicitly: the user asked for it."""
    tables = existing(ddb, assembly, 1)
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"Records": [record("INSERT", {"id": "p0"})]}))
    code = main([
        "invoke", "--event", str(event), "--cloud-assembly", str(assembly),
        "--function", "OffFunction", "--endpoint-url", ddb_local.endpoint_url, *tables["args"],
    ])  # fmt: skip
    assert code == 0
    assert json.loads(capsys.readouterr().out) == {"batchItemFailures": []}
    assert left_in(ddb, tables["names"]["OffTarget"]) == 0
