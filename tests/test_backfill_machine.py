"""``backfill=``: the state machine, its worker and their roles, read from the template."""

from __future__ import annotations

import json
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk.assertions import Template

from stream_scavenger import BackfillOptions, ScavengerConfigError, StreamScavenger
from stream_scavenger.runtime.scavenger.config import (
    BACKFILL_HANDLER,
    ENV_BACKFILL,
    ENV_BACKFILL_SOURCE,
    HANDLER,
)

S, N = dynamodb.AttributeType.STRING, dynamodb.AttributeType.NUMBER
PAID = [{"dynamodb": {"NewImage": {"status": {"S": ["PAID"]}}}}]


def build(**kw: Any) -> tuple[cdk.Stack, Template]:
    stack = cdk.Stack(cdk.App(), "Test")
    key: dict[str, Any] = {
        "partition_key": dynamodb.Attribute(name="messageId", type=S),
        "sort_key": dynamodb.Attribute(name="createdAt", type=N),
    }
    source = kw.pop("source_table", None) or dynamodb.Table(stack, "Messages", **key)
    target = dynamodb.Table(stack, "Staging", **key)
    StreamScavenger(stack, "Scavenger", source_table=source, target_table=target, **kw)
    return stack, Template.from_stack(stack)


def functions(template: Template) -> dict[str, dict[str, Any]]:
    return {
        f["Properties"]["Handler"]: f["Properties"]
        for f in template.find_resources("AWS::Lambda::Function").values()
    }


def statements_of(template: Template, role_ref: dict[str, Any]) -> list[dict[str, Any]]:
    (logical_id,) = role_ref["Fn::GetAtt"][:1]
    return [
        statement
        for policy in template.find_resources("AWS::IAM::Policy").values()
        if {"Ref": logical_id} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def actions(statements: list[dict[str, Any]]) -> set[str]:
    out: set[str] = set()
    for statement in statements:
        given = statement["Action"]
        out |= {given} if isinstance(given, str) else set(given)
    return out


def definition(template: Template) -> dict[str, Any]:
    """The state machine's definition, each reference replaced by the logical ID it names."""
    (machine,) = template.find_resources("AWS::StepFunctions::StateMachine").values()
    parts = machine["Properties"]["DefinitionString"]["Fn::Join"][1]
    text = "".join(p if isinstance(p, str) else (p.get("Ref") or p["Fn::GetAtt"][0]) for p in parts)
    return json.loads(text)  # type: ignore[no-any-return]


def logical_id_of(template: Template, handler: str) -> str:
    (found,) = [
        logical_id
        for logical_id, f in template.find_resources("AWS::Lambda::Function").items()
        if f["Properties"]["Handler"] == handler
    ]
    return found


def test_without_backfill_nothing_is_added() -> None:
    _, template = build()
    template.resource_count_is("AWS::StepFunctions::StateMachine", 0)
    assert set(functions(template)) == {HANDLER}
    assert "dynamodb:Scan" not in json.dumps(template.to_json())


def test_the_worker_may_scan_the_source_and_delete_from_the_targets_and_nothing_else() -> None:
    _, template = build(backfill=True, filters=PAID)
    worker = functions(template)[BACKFILL_HANDLER]
    assert worker["Timeout"] == 900 and worker["Runtime"] == "python3.14"
    env = worker["Environment"]["Variables"]
    settings = json.loads(env[ENV_BACKFILL])
    assert settings["key_names"] == ["messageId", "createdAt"]
    assert settings["event_name"] == "INSERT" and settings["page_size"] == 1000
    # the mapping's own patterns: the event names merged into the user's filter
    patterns = [json.loads(p) for p in settings["filters"]]
    assert patterns == [{**PAID[0], "eventName": ["INSERT"]}]
    assert "Ref" in env[ENV_BACKFILL_SOURCE]
    granted = statements_of(template, worker["Role"])
    dynamodb_actions = {a for a in actions(granted) if a.startswith("dynamodb:")}
    assert dynamodb_actions == {"dynamodb:Scan", "dynamodb:BatchWriteItem"}
    (scan,) = [s for s in granted if s["Action"] == "dynamodb:Scan"]
    assert scan["Resource"]["Fn::GetAtt"][0].startswith("Messages")
    (delete,) = [s for s in granted if s["Action"] == "dynamodb:BatchWriteItem"]
    assert delete["Resource"]["Fn::GetAtt"][0].startswith("Staging")
    # and the stream function gained nothing
    stream_role = functions(template)[HANDLER]["Role"]
    assert "dynamodb:Scan" not in actions(statements_of(template, stream_role))


def test_a_dry_run_worker_gets_no_write_permission() -> None:
    _, template = build(backfill=True, dry_run=True)
    worker = functions(template)[BACKFILL_HANDLER]
    dynamodb_actions = {
        a for a in actions(statements_of(template, worker["Role"])) if a.startswith("dynamodb:")
    }
    assert dynamodb_actions == {"dynamodb:Scan"}


def test_the_state_machine_maps_the_segments_and_loops_each_until_done() -> None:
    _, template = build(backfill=BackfillOptions(segments=8, max_concurrency=4))
    machine = definition(template)
    start = machine["States"][machine["StartAt"]]
    assert start["Type"] == "Pass"
    assert start["Parameters"] == {"segments.$": "States.ArrayRange(0, 7, 1)"}
    segments = machine["States"][start["Next"]]
    assert segments["Type"] == "Map" and segments["MaxConcurrency"] == 4
    assert segments["ItemProcessor"]["ProcessorConfig"]["Mode"] == "INLINE"
    assert segments["ItemSelector"] == {"segment.$": "$$.Map.Item.Value", "total_segments": 8}
    inner = segments["ItemProcessor"]
    scan = inner["States"][inner["StartAt"]]
    assert scan["Type"] == "Task" and scan["Resource"] == logical_id_of(template, BACKFILL_HANDLER)
    assert "Lambda.ServiceException" in scan["Retry"][0]["ErrorEquals"]
    done = inner["States"][scan["Next"]]
    assert done["Type"] == "Choice"
    assert done["Choices"][0]["Variable"] == "$.done" and done["Choices"][0]["BooleanEquals"]
    assert inner["States"][done["Choices"][0]["Next"]]["Type"] == "Succeed"
    assert done["Default"] == inner["StartAt"]  # not done: the next call goes on


def test_the_write_budget_is_shared_by_the_segments_in_flight() -> None:
    _, template = build(
        backfill=BackfillOptions(segments=8, max_concurrency=4, max_write_units=100)
    )
    settings = json.loads(
        functions(template)[BACKFILL_HANDLER]["Environment"]["Variables"][ENV_BACKFILL]
    )
    assert settings["write_units_per_s"] == 25 and settings["read_units_per_s"] is None


def test_backfill_takes_true_false_or_options() -> None:
    with pytest.raises(ScavengerConfigError, match="backfill must be True, False or Backfill"):
        build(backfill="yes")


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"segments": 0}, r"backfill segments must be an integer in 1\.\.100, got 0"),
        ({"segments": 101}, r"backfill segments must be an integer in 1\.\.100, got 101"),
        ({"max_concurrency": 41}, r"backfill max_concurrency must be an integer in 1\.\.40"),
        ({"page_size": 0}, r"backfill page_size must be an integer in 1\.\.10000"),
        (
            {"max_concurrency": 4, "max_write_units": 2},
            r"max_write_units must be an integer in 4\.\.",
        ),
    ],
)
def test_backfill_options_out_of_range_name_the_option_and_its_range(
    kw: dict[str, Any], message: str
) -> None:
    with pytest.raises(ScavengerConfigError, match=message):
        BackfillOptions(**kw)


def test_a_remove_only_scavenger_cannot_be_backfilled() -> None:
    with pytest.raises(
        ScavengerConfigError,
        match=r"^Test/Scavenger: backfill cannot work for a scavenger that acts on REMOVE only",
    ):
        build(backfill=True, event_names=["REMOVE"])


def test_an_imported_source_cannot_be_backfilled_on_aws() -> None:
    stack = cdk.Stack(cdk.App(), "Test")
    source = dynamodb.Table.from_table_attributes(
        stack,
        "Messages",
        table_name="messages",
        table_stream_arn="arn:aws:dynamodb:us-east-1:123456789012:table/messages/stream/x",
    )
    target = dynamodb.Table(stack, "Staging", partition_key=dynamodb.Attribute(name="id", type=S))
    with pytest.raises(ScavengerConfigError, match="backfill needs the source's key schema"):
        StreamScavenger(
            stack, "Scavenger", source_table=source, target_table=target,
            key_mapping={"id": "id"}, backfill=True,
        )  # fmt: skip


def test_filters_a_scan_cannot_decide_are_refused_at_synth_time() -> None:
    old = {"dynamodb": {"OldImage": {"status": {"S": [{"exists": False}]}}}}
    with pytest.raises(
        ScavengerConfigError,
        match=r"^Test/Scavenger: backfill: the filter criteria read dynamodb\.OldImage",
    ):
        build(backfill=True, event_names=["MODIFY"], filters=[old])
