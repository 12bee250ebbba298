"""Several targets from one stream: the construct, the runtime on DynamoDB Local, end to end."""

from __future__ import annotations

import io
import json
import math
import threading
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_kms as kms
from aws_cdk.assertions import Template

from stream_scavenger import ScavengerConfigError, ScavengerTarget, StreamScavenger
from stream_scavenger.local.scenario import check_assembly
from stream_scavenger.runtime.scavenger.config import (
    HANDLER,
    ConfigError,
    ScavengerConfig,
    TargetConfig,
)
from stream_scavenger.runtime.scavenger.handler import Scavenger
from testkit.events import Context, event, record
from testkit.tables import CountingClient, put_items, scan_keys

S, N = dynamodb.AttributeType.STRING, dynamodb.AttributeType.NUMBER
DESIGN_MAPPING = {"pk": "STAGING#{messageId}", "sk": "MSG#{createdAt}"}

# ---- the construct -----------------------------------------------------------------------


class Tables:
    """A stack with a messages table and three possible targets."""

    def __init__(self, app: cdk.App | None = None) -> None:
        self.stack = cdk.Stack(app or cdk.App(), "Multi")
        message_key = {
            "partition_key": dynamodb.Attribute(name="messageId", type=S),
            "sort_key": dynamodb.Attribute(name="createdAt", type=N),
        }
        self.messages = dynamodb.Table(self.stack, "Messages", **message_key)
        self.staging = dynamodb.Table(self.stack, "Staging", **message_key)
        self.design = dynamodb.Table(
            self.stack,
            "Design",
            partition_key=dynamodb.Attribute(name="pk", type=S),
            sort_key=dynamodb.Attribute(name="sk", type=S),
        )
        self.drafts = dynamodb.Table(
            self.stack, "Drafts", partition_key=dynamodb.Attribute(name="draftId", type=S)
        )

    def scavenger(self, **kw: Any) -> StreamScavenger:
        return StreamScavenger(self.stack, "Scavenger", source_table=self.messages, **kw)

    def three_targets(self, **kw: Any) -> StreamScavenger:
        """Staging and design on INSERT; drafts, keyed by a non-key attribute, on REMOVE."""
        return self.scavenger(
            targets=[
                ScavengerTarget(self.staging),
                ScavengerTarget(self.design, key_mapping=DESIGN_MAPPING),
                ScavengerTarget(
                    self.drafts, key_mapping={"draftId": "draftRef"}, event_names=["REMOVE"]
                ),
            ],
            **kw,
        )


def function_env(template: Template) -> dict[str, Any]:
    (function,) = template.find_resources("AWS::Lambda::Function").values()
    env: dict[str, Any] = function["Properties"]["Environment"]["Variables"]
    return env


def write_resources(template: Template) -> list[Any]:
    (policy,) = template.find_resources("AWS::IAM::Policy").values()
    return [
        statement["Resource"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        if statement["Action"] == "dynamodb:BatchWriteItem"
    ]


def ref(stack: cdk.Stack, table: dynamodb.Table) -> dict[str, str]:
    return {"Ref": stack.get_logical_id(table.node.default_child)}  # type: ignore[arg-type]


def test_one_function_and_one_mapping_serve_every_target() -> None:
    t = Tables()
    scavenger = t.three_targets()
    template = Template.from_stack(t.stack)

    template.resource_count_is("AWS::Lambda::Function", 1)
    template.resource_count_is("AWS::Lambda::EventSourceMapping", 1)
    env = function_env(template)
    assert env["SCAVENGER_TARGET_TABLE"] == ref(t.stack, t.staging)
    assert env["SCAVENGER_TARGET_TABLE_1"] == ref(t.stack, t.design)
    assert env["SCAVENGER_TARGET_TABLE_2"] == ref(t.stack, t.drafts)
    config = json.loads(env["SCAVENGER_CONFIG"])
    assert config["version"] == 2
    assert [c["key_mapping"] for c in config["targets"]] == [
        {"messageId": "messageId", "createdAt": "createdAt"},
        DESIGN_MAPPING,
        {"draftId": "draftRef"},
    ]
    assert [c["event_names"] for c in config["targets"]] == [["INSERT"], ["INSERT"], ["REMOVE"]]
    assert [c["key_types"] for c in config["targets"]][1] == {"pk": "S", "sk": "S"}
    # The filter lets through what any target acts on; the stream carries what any target reads.
    template.has_resource_properties(
        "AWS::Lambda::EventSourceMapping",
        {"FilterCriteria": {"Filters": [{"Pattern": '{"eventName":["INSERT","REMOVE"]}'}]}},
    )
    assert scavenger.stream_view_type == dynamodb.StreamViewType.OLD_IMAGE
    assert [e.value for e in scavenger.event_names] == ["INSERT", "REMOVE"]
    assert [t_.key_mapping for t_ in scavenger.targets][2] == {"draftId": "draftRef"}


def test_deletes_are_granted_on_exactly_the_target_tables() -> None:
    t = Tables()
    t.three_targets()
    template = Template.from_stack(t.stack)

    (resources,) = write_resources(template)
    arns = [
        {"Fn::GetAtt": [ref(t.stack, table)["Ref"], "Arn"]}
        for table in (t.staging, t.design, t.drafts)
    ]
    assert resources == arns
    template.has_resource_properties(
        "AWS::IAM::Role",
        {"Description": "stream-scavenger: read one stream, delete from 3 tables"},
    )


def test_a_customer_managed_key_on_one_target_is_granted_for_that_target() -> None:
    t = Tables()
    key = kms.Key(t.stack, "Key")
    sealed = dynamodb.Table(
        t.stack,
        "Sealed",
        partition_key=dynamodb.Attribute(name="messageId", type=S),
        encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
        encryption_key=key,
    )
    t.scavenger(targets=[ScavengerTarget(t.staging), ScavengerTarget(sealed)])
    template = Template.from_stack(t.stack)
    (policy,) = template.find_resources("AWS::IAM::Policy").values()
    kms_statements = [
        s
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
        if any(
            a.startswith("kms:")
            for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
        )
    ]
    assert len(kms_statements) == 1
    assert kms_statements[0]["Resource"] == {
        "Fn::GetAtt": [t.stack.get_logical_id(key.node.default_child), "Arn"]  # type: ignore[arg-type]
    }


def test_a_dry_run_with_several_targets_writes_nowhere() -> None:
    t = Tables()
    t.three_targets(dry_run=True)
    template = Template.from_stack(t.stack)
    assert write_resources(template) == []
    assert json.loads(function_env(template)["SCAVENGER_CONFIG"])["dry_run"] is True


def test_the_single_target_form_writes_the_one_contract_shape() -> None:
    t = Tables()
    scavenger = t.scavenger(target_table=t.staging)
    env = function_env(Template.from_stack(t.stack))
    assert "SCAVENGER_TARGET_TABLE_1" not in env
    config = json.loads(env["SCAVENGER_CONFIG"])
    assert config["version"] == 2 and len(config["targets"]) == 1
    assert "key_mapping" not in config
    assert scavenger.key_mapping == {"messageId": "messageId", "createdAt": "createdAt"}
    # One target in the plural form synthesizes the same function configuration.
    other = Tables()
    other.scavenger(targets=[ScavengerTarget(other.staging)])
    assert function_env(Template.from_stack(other.stack)) == env


def test_event_names_of_the_scavenger_are_the_default_for_each_target() -> None:
    t = Tables()
    scavenger = t.scavenger(
        targets=[
            ScavengerTarget(t.staging),
            ScavengerTarget(t.drafts, key_mapping={"draftId": "draftRef"}, event_names=["INSERT"]),
        ],
        event_names=["MODIFY"],
    )
    assert [[e.value for e in t_.event_names] for t_ in scavenger.targets] == [
        ["MODIFY"],
        ["INSERT"],
    ]


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda t: t.scavenger(target_table=t.staging, targets=[ScavengerTarget(t.design)]),
            "pass target_table or targets, not both",
        ),
        (lambda t: t.scavenger(), "target_table is required"),
        (lambda t: t.scavenger(targets=[]), r"targets must hold 1\.\.10 ScavengerTarget, got 0"),
        (lambda t: t.scavenger(targets=t.staging), "targets must be a list of ScavengerTarget"),
        (
            lambda t: t.scavenger(targets=[ScavengerTarget(t.staging)] * 11),
            r"targets must hold 1\.\.10",
        ),
        (
            lambda t: t.scavenger(targets=[ScavengerTarget(t.staging), t.design]),
            r"targets\[1\] must be a ScavengerTarget, got Table",
        ),
        (
            lambda t: t.scavenger(
                targets=[ScavengerTarget(t.staging), ScavengerTarget(t.design), t.staging]
            ),
            r"targets\[2\] must be a ScavengerTarget",
        ),
        (
            lambda t: t.scavenger(
                targets=[
                    ScavengerTarget(t.staging),
                    ScavengerTarget(t.design, key_mapping=DESIGN_MAPPING),
                    ScavengerTarget(t.staging, event_names=["REMOVE"]),
                ]
            ),
            r"targets\[2\] names the same table as targets\[0\]",
        ),
        (
            lambda t: t.scavenger(
                targets=[
                    ScavengerTarget(
                        dynamodb.Table.from_table_name(t.stack, "A", "shared"),
                        key_mapping={"id": "messageId"},
                    ),
                    ScavengerTarget(
                        dynamodb.Table.from_table_name(t.stack, "B", "shared"),
                        key_mapping={"id": "messageId"},
                    ),
                ]
            ),
            r"targets\[1\] names the same table as targets\[0\]",
        ),
        (
            lambda t: t.scavenger(
                targets=[
                    ScavengerTarget(t.staging),
                    ScavengerTarget(t.design, key_mapping={"pk": "messageId"}),
                ]
            ),
            r"targets\[1\]: key_mapping misses the target key attributes \['sk'\]",
        ),
        (
            lambda t: t.scavenger(
                targets=[
                    ScavengerTarget(t.staging),
                    ScavengerTarget(t.design, key_mapping={"pk": "{messageId}", "sk": "{x"}),
                ]
            ),
            r"targets\[1\]: key_mapping\['sk'\]",
        ),
        (
            lambda t: t.scavenger(
                targets=[ScavengerTarget(t.staging, event_names=["UPSERT"])],
            ),
            r"targets\[0\]: event_names: unknown event 'UPSERT'",
        ),
        (
            lambda t: t.scavenger(
                targets=[ScavengerTarget(t.staging)], key_mapping={"messageId": "messageId"}
            ),
            r"key_mapping is per target with targets=",
        ),
        (
            lambda t: t.three_targets(
                filters=[
                    {
                        "eventName": ["INSERT"],
                        "dynamodb": {"Keys": {"messageId": {"S": [{"prefix": "m"}]}}},
                    }
                ]
            ),
            r"filters let no REMOVE record through, so targets\[2\] would never delete",
        ),
    ],
    ids=[
        "both",
        "neither",
        "empty",
        "not-a-list",
        "eleven",
        "not-a-target",
        "not-a-target-later",
        "same-table-twice",
        "same-imported-name",
        "mapping-checked-per-table",
        "template-checked-per-table",
        "event-names-checked-per-target",
        "top-level-key-mapping",
        "filters-starve-a-target",
    ],
)
def test_bad_targets_fail_at_synth_naming_the_option(build: Any, message: str) -> None:
    with pytest.raises(ScavengerConfigError, match=message):
        build(Tables())


def test_per_target_metrics_carry_the_table_name() -> None:
    t = Tables()
    scavenger = t.three_targets()
    metric = scavenger.metric_keys_deleted(target=t.design)
    dims = t.stack.resolve(metric.dimensions)
    assert dims == {
        "FunctionName": t.stack.resolve(scavenger.function.function_name),
        "TargetTable": ref(t.stack, t.design),
    }
    assert t.stack.resolve(scavenger.metric_keys_deleted().dimensions) == {
        "FunctionName": t.stack.resolve(scavenger.function.function_name)
    }
    with pytest.raises(ScavengerConfigError, match="target: Retries is not per target"):
        scavenger.metric_retries(target=t.design)
    other = dynamodb.Table(t.stack, "Other", partition_key=dynamodb.Attribute(name="x", type=S))
    with pytest.raises(ScavengerConfigError, match="Multi/Other is not a target"):
        scavenger.metric("KeysDeleted", target=other)
    with pytest.raises(ScavengerConfigError, match=r"has 3 targets: read targets\[i\]"):
        _ = scavenger.key_mapping


def test_the_dashboard_shows_deletes_and_replays_per_target() -> None:
    t = Tables()
    t.three_targets(dashboard=True)
    (dashboard,) = (
        Template.from_stack(t.stack).find_resources("AWS::CloudWatch::Dashboard").values()
    )
    parts = dashboard["Properties"]["DashboardBody"]["Fn::Join"][1]
    body = "".join(p if isinstance(p, str) else json.dumps(p).replace('"', "'") for p in parts)
    widgets = {
        w["properties"]["title"]: w["properties"]["metrics"] for w in json.loads(body)["widgets"]
    }
    for title, name in (
        ("Keys deleted per target", "KeysDeleted"),
        ("Records reported per target", "RecordsReported"),
    ):
        lines = widgets[title]
        assert [m[1] for m in lines] == [name] * 3
        assert {m[4] for m in lines} == {"TargetTable"}
        assert [m[5] for m in lines] == [
            f"{{'Ref': '{ref(t.stack, table)['Ref']}'}}"
            for table in (t.staging, t.design, t.drafts)
        ]
        assert [m[-1]["label"] for m in lines] == ["Staging", "Design", "Drafts"]


def test_with_one_target_the_per_target_metric_is_the_functions_own() -> None:
    t = Tables()
    scavenger = t.scavenger(target_table=t.staging)
    dims = t.stack.resolve(scavenger.metric_keys_deleted(target=t.staging).dimensions)
    assert set(dims) == {"FunctionName"}


# ---- the contract ------------------------------------------------------------------------


def test_the_contract_round_trips_and_needs_every_table_variable() -> None:
    config = ScavengerConfig(
        targets=(
            TargetConfig("a", {"id": "id"}, frozenset({"INSERT"}), {"id": "S"}),
            TargetConfig("b", {"pk": "X#{id}"}, frozenset({"REMOVE", "MODIFY"}), {}, None),
        ),
        max_attempts=3,
    )
    env = config.to_env()
    assert ScavengerConfig.from_env(env) == config
    assert config.event_names == {"INSERT", "MODIFY", "REMOVE"}
    del env["SCAVENGER_TARGET_TABLE_1"]
    with pytest.raises(ConfigError, match="SCAVENGER_TARGET_TABLE_1"):
        ScavengerConfig.from_env(env)
    with pytest.raises(ConfigError, match="distinct"):
        ScavengerConfig(targets=(config.targets[0], config.targets[0]))


def test_the_flat_single_target_shape_is_not_read() -> None:
    env = ScavengerConfig.single("a", {"id": "id"}).to_env()
    shape = json.loads(env["SCAVENGER_CONFIG"])
    (target,) = shape.pop("targets")
    old = {**shape, **target, "version": 1}
    with pytest.raises(ConfigError, match="must be a version 2 object with a targets list"):
        ScavengerConfig.from_env({**env, "SCAVENGER_CONFIG": json.dumps(old)})


# ---- the runtime on DynamoDB Local -------------------------------------------------------


def message(i: int, event_name: str = "INSERT", **extra: Any) -> dict[str, Any]:
    keys = {"messageId": f"m{i}", "createdAt": 1000 + i}
    image = {**keys, **extra}
    if event_name == "REMOVE":
        return record(event_name, keys, old=image)
    return record(event_name, keys, new=image)


@pytest.fixture
def targets(ddb: Any, make_table: Any) -> dict[str, str]:
    """Staging (same key), design (single-table templates), drafts (non-key, REMOVE), filled."""
    tables = {
        "staging": make_table({"messageId": "S", "createdAt": "N"}),
        "design": make_table({"pk": "S", "sk": "S"}),
        "drafts": make_table({"draftId": "S"}),
    }
    put_items(
        ddb,
        tables["staging"],
        [{"messageId": f"m{i}", "createdAt": 1000 + i} for i in range(100)],
    )
    put_items(
        ddb,
        tables["design"],
        [{"pk": f"STAGING#m{i}", "sk": f"MSG#{1000 + i}"} for i in range(100)],
    )
    put_items(ddb, tables["drafts"], [{"draftId": f"d{i}"} for i in range(100)])
    return tables


def config_for(tables: dict[str, str], **options: Any) -> ScavengerConfig:
    return ScavengerConfig(
        targets=(
            TargetConfig(
                tables["staging"],
                {"messageId": "messageId", "createdAt": "createdAt"},
                key_types={"messageId": "S", "createdAt": "N"},
                sort_key="createdAt",
            ),
            TargetConfig(tables["design"], DESIGN_MAPPING, key_types={"pk": "S", "sk": "S"}),
            TargetConfig(tables["drafts"], {"draftId": "draftRef"}, frozenset({"REMOVE"})),
        ),
        **options,
    )


class RequestLog(CountingClient):
    """Counts items per call, and remembers which tables each request named."""

    def __init__(self, client: Any) -> None:
        super().__init__(client)
        self.tables: list[set[str]] = []

    def batch_write_item(self, **kwargs: Any) -> dict[str, Any]:
        with self._lock:
            self.tables.append(set(kwargs["RequestItems"]))
        return super().batch_write_item(**kwargs)


@pytest.mark.ddb
def test_deletes_for_all_targets_share_requests(ddb: Any, targets: dict[str, str]) -> None:
    records = [message(i) for i in range(40)] + [
        message(i, "REMOVE", draftRef=f"d{i}") for i in range(50, 60)
    ]
    client = RequestLog(ddb)
    scavenger = Scavenger(config_for(targets), client, sleep=lambda s: None)

    assert scavenger.handle(event(*records), Context()) == {"batchItemFailures": []}

    assert scan_keys(ddb, targets["staging"], ["messageId"]) == {(f"m{i}",) for i in range(40, 100)}
    assert scan_keys(ddb, targets["design"], ["pk"]) == {(f"STAGING#m{i}",) for i in range(40, 100)}
    assert scan_keys(ddb, targets["drafts"], ["draftId"]) == {
        (f"d{i}",) for i in range(100) if not 50 <= i < 60
    }
    # 40 + 40 + 10 distinct keys: ceil(90 / 25) = 4 requests, not 2 + 2 + 1 = 5 table by table.
    assert sorted(client.calls) == [15, 25, 25, 25]
    assert len(client.calls) == math.ceil(90 / 25)
    assert any(len(tables) > 1 for tables in client.tables)
    summary = scavenger.last_summary
    assert (summary.records, summary.matched, summary.deleted, summary.distinct_keys) == (
        50,
        50,
        90,
        90,
    )
    assert [(t.matched, t.deleted) for t in summary.targets] == [(40, 40), (40, 40), (10, 10)]


@pytest.mark.ddb
def test_duplicates_are_removed_per_table_not_across_tables(ddb: Any, make_table: Any) -> None:
    first, second = make_table({"id": "S"}), make_table({"id": "S"})
    put_items(ddb, first, [{"id": f"k{i}"} for i in range(10)])
    put_items(ddb, second, [{"id": f"k{i}"} for i in range(10)])
    config = ScavengerConfig(
        targets=(TargetConfig(first, {"id": "id"}), TargetConfig(second, {"id": "id"}))
    )
    client = CountingClient(ddb)
    scavenger = Scavenger(config, client, sleep=lambda s: None)
    records = [record("INSERT", {"id": f"k{i % 5}"}) for i in range(15)]  # 5 keys, 3 times each

    scavenger.handle(event(*records), Context())

    assert scan_keys(ddb, first, ["id"]) == scan_keys(ddb, second, ["id"])
    assert scan_keys(ddb, first, ["id"]) == {(f"k{i}",) for i in range(5, 10)}
    assert client.calls == [10]  # the same key value in two tables is two deletes
    summary = scavenger.last_summary
    assert [(t.matched, t.duplicates, t.deleted) for t in summary.targets] == [
        (15, 10, 5),
        (15, 10, 5),
    ]
    assert (summary.duplicates, summary.distinct_keys) == (20, 10)


class WithholdTable:
    """DynamoDB Local, except that one table's deletes always come back unprocessed."""

    def __init__(self, client: Any, table: str) -> None:
        self.client, self.table = client, table
        self.withheld = 0
        self._lock = threading.Lock()

    def batch_write_item(self, **kwargs: Any) -> dict[str, Any]:
        items = dict(kwargs["RequestItems"])
        held = items.pop(self.table, [])
        with self._lock:
            self.withheld += len(held)
        response = (
            self.client.batch_write_item(**{**kwargs, "RequestItems": items}) if items else {}
        )
        return {**response, "UnprocessedItems": {self.table: held} if held else {}}


@pytest.mark.ddb
def test_a_record_is_reported_when_any_of_its_keys_survives(
    ddb: Any, targets: dict[str, str]
) -> None:
    records = [message(i) for i in range(30)]
    client = WithholdTable(ddb, targets["design"])
    scavenger = Scavenger(config_for(targets, max_attempts=3), client, sleep=lambda s: None)

    response = scavenger.handle(event(*records), Context())

    # The design items could not go: every record is reported.
    assert len(scan_keys(ddb, targets["design"], ["pk"])) == 100
    reported = [f["itemIdentifier"] for f in response["batchItemFailures"]]
    assert reported == [r["dynamodb"]["SequenceNumber"] for r in records]
    # Unprocessed is throttling: retried while the invocation's time lasts, not max_attempts times.
    assert client.withheld > 30 * 3
    # One pacer paces every target, in stream order: the staging copies went as far as the
    # table that throttles let the requests go, the earliest first (at least the first
    # request's; a fresh container sends one request before it knows the tables).
    staging, design, drafts = scavenger.last_summary.targets
    assert staging.deleted >= 1 and staging.deleted + staging.reported == 30
    left = {(f"m{i}",) for i in range(staging.deleted, 100)}
    assert scan_keys(ddb, targets["staging"], ["messageId"]) == left
    assert (design.deleted, design.reported) == (0, 30)
    assert (drafts.matched, drafts.reported) == (0, 0)


@pytest.mark.ddb
def test_a_record_unmappable_for_one_target_still_deletes_from_the_others(
    ddb: Any, targets: dict[str, str]
) -> None:
    scavenger = Scavenger(config_for(targets), ddb, sleep=lambda s: None)
    removed = [message(i, "REMOVE", draftRef=f"d{i}") for i in range(3)]
    no_ref = message(3, "REMOVE")  # drafts cannot map it; no other target acts on REMOVE
    inserted = message(4)

    response = scavenger.handle(event(*removed, no_ref, inserted), Context())

    assert response == {"batchItemFailures": []}
    assert ("d0",) not in scan_keys(ddb, targets["drafts"], ["draftId"])
    assert ("m4",) not in scan_keys(ddb, targets["staging"], ["messageId"])
    assert ("m3",) in scan_keys(ddb, targets["staging"], ["messageId"])  # REMOVE is drafts' only
    summary = scavenger.last_summary
    assert (summary.matched, summary.unmappable, summary.skipped) == (4, 1, 0)
    assert [t.unmappable for t in summary.targets] == [0, 0, 1]


@pytest.mark.ddb
def test_each_target_gets_its_own_metrics_line(ddb: Any, targets: dict[str, str]) -> None:
    scavenger = Scavenger(config_for(targets), ddb, sleep=lambda s: None)
    out = io.StringIO()
    with redirect_stdout(out):
        scavenger.handle(
            event(message(0), message(0), message(1, "REMOVE", draftRef="d1")), Context()
        )
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    per_target = {line["TargetTable"]: line for line in lines if "TargetTable" in line}
    (total,) = [line for line in lines if "TargetTable" not in line]

    assert set(per_target) == set(targets.values())
    assert per_target[targets["staging"]]["KeysDeleted"] == 1
    assert per_target[targets["staging"]]["DuplicateKeys"] == 1
    assert per_target[targets["drafts"]]["KeysDeleted"] == 1
    assert per_target[targets["design"]]["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [
        ["FunctionName", "TargetTable"]
    ]
    assert (total["KeysDeleted"], total["DuplicateKeys"], total["RecordsMatched"]) == (3, 2, 3)


@pytest.mark.ddb
def test_a_dry_run_counts_per_target_and_sends_nothing(ddb: Any, targets: dict[str, str]) -> None:
    client = CountingClient(ddb)
    scavenger = Scavenger(config_for(targets, dry_run=True), client)
    scavenger.handle(event(message(0), message(0), message(1)), Context())
    assert client.calls == []
    assert [t.deleted for t in scavenger.last_summary.targets] == [2, 2, 0]
    assert len(scan_keys(ddb, targets["staging"], ["messageId"])) == 100


# ---- end to end: the integ app's template on DynamoDB Local ------------------------------


@pytest.mark.ddb
def test_three_targets_end_to_end_through_the_synthesized_asset(
    tmp_path: Path, ddb_local: Any, ddb: Any, ddb_streams: Any
) -> None:
    app = cdk.App(outdir=str(tmp_path / "cdk.out"))
    Tables(app).three_targets(batch_size=40)
    assembly = app.synth().directory

    (report,) = check_assembly(assembly, ddb_local.endpoint_url, (ddb, ddb_streams), records=70)

    assert report.ok
    assert sorted(report.targets.values()) == [(70, 70)] * 3
    assert report.unrelated_kept == report.unrelated_total == 210
    # INSERT then REMOVE of each message: 140 records, each deleting in the targets it selects.
    assert report.run.records_read == 140 and report.run.given_up == []
    assert report.metrics["KeysDeleted"] == 210
    assert report.metrics["BatchWriteRequests"] >= math.ceil(210 / 25)


def test_the_two_target_integ_app_synthesizes_one_scavenger() -> None:
    template = json.loads(
        (
            Path(__file__).resolve().parent.parent
            / "integ"
            / "integ_two_targets.py.snapshot"
            / "StreamScavengerIntegTwoTargets.template.json"
        ).read_text()
    )
    functions = [r for r in template["Resources"].values() if r["Type"] == "AWS::Lambda::Function"]
    scavengers = [
        f
        for f in functions
        if "SCAVENGER_CONFIG" in f["Properties"].get("Environment", {}).get("Variables", {})
        and f["Properties"]["Handler"] == HANDLER  # not the backfill's worker
    ]
    assert len(scavengers) == 1
    variables = scavengers[0]["Properties"]["Environment"]["Variables"]
    assert json.loads(variables["SCAVENGER_CONFIG"])["version"] == 2
