"""dry_run=True: everything deployed, nothing deleted, the same counts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_kms as kms
from aws_cdk.assertions import Template

from stream_scavenger import StreamScavenger
from stream_scavenger.local.assembly import load_assembly
from stream_scavenger.local.event_source_mapping import (
    LocalEventSourceMapping,
    create_table,
    table_names_for,
)
from stream_scavenger.local.invoker import SubprocessInvoker
from stream_scavenger.runtime.scavenger.config import ScavengerConfig
from stream_scavenger.runtime.scavenger.handler import Scavenger
from testkit.events import Context, event, record
from testkit.tables import CountingClient, put_items, scan_keys


def dry_stack(
    dry_run: bool, outdir: str | None = None
) -> tuple[cdk.App, cdk.Stack, StreamScavenger]:
    app = cdk.App(outdir=outdir)
    stack = cdk.Stack(app, "Dry")
    key = kms.Key(stack, "Key")
    pk = {"partition_key": dynamodb.Attribute(name="id", type=dynamodb.AttributeType.STRING)}
    source = dynamodb.Table(stack, "Source", **pk)
    target = dynamodb.Table(
        stack,
        "Target",
        encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
        encryption_key=key,
        **pk,
    )
    scavenger = StreamScavenger(
        stack, "Scavenger", source_table=source, target_table=target, dry_run=dry_run
    )
    return app, stack, scavenger


def actions(template: Template) -> set[str]:
    (policy,) = template.find_resources("AWS::IAM::Policy").values()
    found: set[str] = set()
    for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
        listed = statement["Action"]
        found |= set(listed if isinstance(listed, list) else [listed])
    return found


def test_a_dry_run_role_has_no_write_permission_at_all() -> None:
    _, stack, scavenger = dry_stack(True)
    granted = actions(Template.from_stack(stack))
    assert not {
        a
        for a in granted
        if a.startswith("dynamodb:")
        and a
        not in (
            "dynamodb:DescribeStream",
            "dynamodb:GetRecords",
            "dynamodb:GetShardIterator",
            "dynamodb:ListStreams",
        )
    }
    assert not {"kms:Encrypt", "kms:GenerateDataKey*", "kms:ReEncrypt*"} & granted
    assert scavenger.dry_run is True
    (fn,) = Template.from_stack(stack).find_resources("AWS::Lambda::Function").values()
    assert (
        json.loads(fn["Properties"]["Environment"]["Variables"]["SCAVENGER_CONFIG"])["dry_run"]
        is True
    )


def test_switching_it_off_grants_the_deletes_back() -> None:
    _, stack, scavenger = dry_stack(False)
    granted = actions(Template.from_stack(stack))
    assert "dynamodb:BatchWriteItem" in granted and "kms:Encrypt" in granted
    assert scavenger.dry_run is False


@pytest.mark.ddb
def test_the_runtime_makes_no_request_and_counts_what_it_would_delete(
    ddb: Any, make_table: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    table = make_table({"id": "S"})
    put_items(ddb, table, [{"id": f"k{i}"} for i in range(30)])
    client = CountingClient(ddb)
    config = ScavengerConfig.single(target_table=table, key_mapping={"id": "id"}, dry_run=True)
    batch = event(
        *[record("INSERT", {"id": f"k{i % 30}"}) for i in range(40)], record("INSERT", {"x": "y"})
    )
    capsys.readouterr()

    response = Scavenger(config, client).handle(batch, Context())

    assert response == {"batchItemFailures": []}
    assert client.calls == []
    assert len(scan_keys(ddb, table, ["id"])) == 30
    (emf,) = [
        json.loads(line)
        for line in capsys.readouterr().out.splitlines()
        if line.startswith('{"_aws"')
    ]
    assert (
        emf["RecordsMatched"],
        emf["DuplicateKeys"],
        emf["KeysDeleted"],
        emf["UnmappableRecords"],
    ) == (40, 10, 30, 1)
    assert emf["BatchWriteRequests"] == 0


@pytest.mark.ddb
def test_dry_run_end_to_end_through_the_synthesized_asset(
    tmp_path: Path, ddb_local: Any, ddb: Any, ddb_streams: Any
) -> None:
    app, _, _ = dry_stack(True, outdir=str(tmp_path / "cdk.out"))
    app.synth()
    (stack_def,) = load_assembly(tmp_path / "cdk.out")
    (function,) = stack_def.functions
    names = table_names_for(stack_def.tables, prefix="dry-")
    arns = {lid: create_table(ddb, names[lid], t) for lid, t in stack_def.tables.items()}
    source = next(lid for lid in names if lid.startswith("Source"))
    target = next(lid for lid in names if lid.startswith("Target"))
    for i in range(12):
        ddb.put_item(TableName=names[target], Item={"id": {"S": f"k{i}"}})
        ddb.put_item(TableName=names[source], Item={"id": {"S": f"k{i}"}})

    env = {
        **function.resolved_environment(names),
        "AWS_ENDPOINT_URL_DYNAMODB": ddb_local.endpoint_url,
    }
    with SubprocessInvoker(function.asset_dir, function.handler, env) as invoker:
        run = LocalEventSourceMapping(
            ddb_streams, arns[source], invoker.invoke, function.mapping.properties
        ).run()
        metrics = invoker.metrics

    assert len(scan_keys(ddb, names[target], ["id"])) == 12, "a dry run deletes nothing"
    assert (metrics["KeysDeleted"], metrics["BatchWriteRequests"]) == (12, 0)
    assert run.given_up == [] and run.invocations == 1
