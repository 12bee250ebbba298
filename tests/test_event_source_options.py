"""The options users of aws-cdk-lib's ``DynamoEventSource`` expect: ``enabled``,
``filter_encryption`` and ``tracing``, as synthesized (and nothing of them by default)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk.assertions import Template
from cdk_nag import AwsSolutionsChecks

from stream_scavenger import ScavengerConfigError, StreamScavenger, compliance
from stream_scavenger.local.assembly import load_assembly
from stream_scavenger.local.event_source_mapping import MappingFilters

STATUS = {"dynamodb": {"NewImage": {"status": {"S": ["PROCESSED"]}}}}
XRAY = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
ACK_NAMESPACE = re.compile(r"^[Aa]nnotation::")
KEY_ARN = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def user_table(scope: cdk.Stack, name: str) -> dynamodb.Table:
    """A table that passes cdk-nag's pack itself, so findings can only be the construct's."""
    return dynamodb.Table(
        scope,
        name,
        partition_key=dynamodb.Attribute(name="messageId", type=dynamodb.AttributeType.STRING),
        point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
            point_in_time_recovery_enabled=True
        ),
    )


def build(scope: cdk.Stack | None = None, **kw: Any) -> tuple[cdk.Stack, StreamScavenger]:
    st = scope or cdk.Stack(cdk.App(), "Test")
    scavenger = StreamScavenger(
        st,
        "Scavenger",
        source_table=user_table(st, "Messages"),
        target_table=user_table(st, "Staging"),
        **kw,
    )
    return st, scavenger


def template_of(**kw: Any) -> dict[str, Any]:
    st, _ = build(**kw)
    return dict(Template.from_stack(st).to_json())


def resources(template: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [r["Properties"] for r in template["Resources"].values() if r["Type"] == kind]


def mapping(template: dict[str, Any]) -> dict[str, Any]:
    (props,) = resources(template, "AWS::Lambda::EventSourceMapping")
    return props


def role_statements(template: dict[str, Any]) -> list[dict[str, Any]]:
    (policy,) = resources(template, "AWS::IAM::Policy")
    return list(policy["PolicyDocument"]["Statement"])


def wildcard_statements(template: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in role_statements(template) if s["Resource"] == "*"]


def acknowledged(scavenger: StreamScavenger) -> dict[str, str]:
    """Rule -> reason of every acknowledgment recorded on the construct's role (without the
    ``annotation::``/``Annotation::`` namespace some aws-cdk-lib versions add)."""
    return {
        ACK_NAMESPACE.sub("", rule): reason
        for entry in scavenger.role.node.metadata
        if entry.type == cdk.Validations.ACKNOWLEDGED_RULES_METADATA_KEY
        for rule, reason in entry.data.items()
    }


def nag_findings(st: cdk.Stack) -> list[tuple[str, str]]:
    """cdk-nag's AwsSolutions pack the way tests/test_compliance.py runs it on 2.257."""
    report = AwsSolutionsChecks().validate_scope(st)
    return [(v.rule_name, str(v.violating_resources[0].locations)) for v in report.violations]


@pytest.fixture(scope="module")
def default_template() -> dict[str, Any]:
    return template_of()


# ---- defaults: the template of before the options ------------------------------------------


def test_the_defaults_spelled_out_synthesize_the_same_template(
    default_template: dict[str, Any],
) -> None:
    explicit = template_of(enabled=True, filter_encryption=None, tracing=None)
    disabled_tracing = template_of(tracing=lambda_.Tracing.DISABLED)
    assert explicit == default_template
    assert disabled_tracing == default_template


def test_the_defaults_write_none_of_the_new_properties(default_template: dict[str, Any]) -> None:
    props = mapping(default_template)
    assert "Enabled" not in props and "KmsKeyArn" not in props
    (function,) = resources(default_template, "AWS::Lambda::Function")
    assert "TracingConfig" not in function
    assert wildcard_statements(default_template) == [
        {"Action": "dynamodb:ListStreams", "Effect": "Allow", "Resource": "*"}
    ]


# ---- enabled -------------------------------------------------------------------------------


def test_enabled_false_pauses_the_mapping() -> None:
    template = template_of(enabled=False)
    props = mapping(template)
    assert props["Enabled"] is False
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]  # the rest as before


# ---- filter_encryption ---------------------------------------------------------------------


def test_filter_encryption_sets_the_key_and_lets_lambda_decrypt_with_it() -> None:
    st = cdk.Stack(cdk.App(), "Test")
    key = kms.Key(st, "FilterKey", enable_key_rotation=True)
    st, _ = build(st, filters=[STATUS], filter_encryption=key)
    template = dict(Template.from_stack(st).to_json())
    props = mapping(template)
    assert props["KmsKeyArn"]["Fn::GetAtt"][0].startswith("FilterKey")
    assert props["KmsKeyArn"]["Fn::GetAtt"][1] == "Arn"
    # The template keeps the plain criteria (Lambda encrypts them when it stores them).
    (pattern,) = props["FilterCriteria"]["Filters"]
    assert json.loads(pattern["Pattern"]) == {**STATUS, "eventName": ["INSERT"]}
    (key_policy,) = [r["KeyPolicy"] for r in resources(template, "AWS::KMS::Key")]
    services = [s for s in key_policy["Statement"] if "Service" in s["Principal"]]
    assert services == [
        {
            "Action": "kms:Decrypt",
            "Effect": "Allow",
            "Principal": {"Service": "lambda.amazonaws.com"},
            "Resource": "*",
        }
    ]
    # Lambda's service decrypts the criteria, not the function: its role gets nothing of the key.
    assert not [s for s in role_statements(template) if "kms" in json.dumps(s["Action"])]


def test_an_imported_filter_key_is_named_by_its_arn() -> None:
    st = cdk.Stack(cdk.App(), "Test")
    key = kms.Key.from_key_arn(st, "Imported", KEY_ARN)
    st, _ = build(st, filters=[STATUS], filter_encryption=key)
    template = dict(Template.from_stack(st).to_json())
    assert mapping(template)["KmsKeyArn"] == KEY_ARN
    assert resources(template, "AWS::KMS::Key") == []  # its policy is the key owner's to grant


@pytest.mark.parametrize("filters", [None, []], ids=["no-filters", "empty-filters"])
def test_filter_encryption_without_filters_is_an_error_naming_path_and_option(
    filters: list[Any] | None,
) -> None:
    st = cdk.Stack(cdk.App(), "Test")
    key = kms.Key(st, "FilterKey")
    with pytest.raises(ScavengerConfigError) as raised:
        build(st, filters=filters, filter_encryption=key)
    message = str(raised.value)
    assert message.startswith("Test/Scavenger: filter_encryption ")
    assert "filters=[...]" in message
    assert raised.value.path == "Test/Scavenger"


def test_a_local_run_from_the_template_still_filters(tmp_path: Path) -> None:
    """The local mapping and redrive read the template's FilterCriteria, which stay plain."""
    app = cdk.App(outdir=str(tmp_path))
    st = cdk.Stack(app, "Encrypted")
    key = kms.Key(st, "FilterKey", enable_key_rotation=True)
    build(st, filters=[STATUS], filter_encryption=key)
    app.synth()
    ((function,),) = [stack.functions for stack in load_assembly(tmp_path)]
    assert function.mapping is not None
    assert "KmsKeyArn" in function.mapping.properties
    filters = MappingFilters.of(function.mapping.properties)

    def record(event: str, status: str) -> dict[str, Any]:
        image = {"messageId": {"S": "m1"}, "status": {"S": status}}
        return {
            "eventName": event,
            "dynamodb": {"Keys": {"messageId": {"S": "m1"}}, "NewImage": image},
        }

    assert filters.selects(record("INSERT", "PROCESSED"))
    assert not filters.selects(record("INSERT", "PENDING"))
    assert not filters.selects(record("MODIFY", "PROCESSED"))


# ---- tracing -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tracing", "mode"),
    [(lambda_.Tracing.ACTIVE, "Active"), (lambda_.Tracing.PASS_THROUGH, "PassThrough")],
)
def test_tracing_sets_the_mode_and_grants_x_ray_on_any_resource(
    tracing: lambda_.Tracing, mode: str
) -> None:
    template = template_of(tracing=tracing)
    (function,) = resources(template, "AWS::Lambda::Function")
    assert function["TracingConfig"] == {"Mode": mode}
    # As aws-cdk-lib's Function does for either mode: X-Ray has no resource-level permissions.
    assert wildcard_statements(template) == [
        {"Action": "dynamodb:ListStreams", "Effect": "Allow", "Resource": "*"},
        {"Action": XRAY, "Effect": "Allow", "Resource": "*"},
    ]
    (role,) = resources(template, "AWS::IAM::Role")
    assert "ManagedPolicyArns" not in role


@pytest.mark.parametrize("tracing", [None, lambda_.Tracing.DISABLED], ids=["none", "disabled"])
def test_no_tracing_grants_no_x_ray(tracing: lambda_.Tracing | None) -> None:
    template = template_of(tracing=tracing)
    assert "xray" not in json.dumps(role_statements(template))


# ---- cdk-nag -------------------------------------------------------------------------------


def test_cdk_nag_finds_nothing_with_every_option_on() -> None:
    st = cdk.Stack(cdk.App(), "Nag")
    key = kms.Key(st, "FilterKey", enable_key_rotation=True)
    build(
        st, enabled=False, filters=[STATUS], filter_encryption=key, tracing=lambda_.Tracing.ACTIVE
    )
    assert nag_findings(st) == []


def test_the_wildcard_acknowledgment_names_x_ray_only_when_tracing() -> None:
    """ListStreams and X-Ray share cdk-nag's finding ID (``Resource::*``) on the role's policy,
    so tracing changes that one acknowledgment's reason, and adds no other."""
    rule = compliance.LIST_STREAMS_WILDCARD.id
    _, traced = build(tracing=lambda_.Tracing.ACTIVE)
    _, untraced = build()
    assert acknowledged(traced)[rule] == compliance.WILDCARD_RESOURCES_WITH_XRAY.reason
    assert "xray:PutTraceSegments" in acknowledged(traced)[rule]
    assert acknowledged(untraced)[rule] == compliance.LIST_STREAMS_WILDCARD.reason
    assert "xray" not in json.dumps(acknowledged(untraced))
    assert set(acknowledged(traced)) == set(acknowledged(untraced)) == {rule}
