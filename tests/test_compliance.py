"""The usual IaC checkers find nothing in what the construct creates.

cdk-nag's AwsSolutions pack runs here through ``validate_scope``, on any aws-cdk-lib: 2.257,
the version the integ snapshots need, predates the validation context cdk-nag 3 reads when
registered with ``Validations.of(app).add_plugins`` (the rules are the same). The registered
plugin, the way users run it, is tested on the newest aws-cdk-lib in tests/test_newest_cdk.py.
cfn-lint runs over every template the suite synthesizes for that purpose.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from cdk_nag import AwsSolutionsChecks
from newest_snapshots import INTEG_RUNNER_MAX_SCHEMA, apps, schema_major, synthesized

from stream_scavenger import ScavengerTarget, StreamScavenger

ROOT = Path(__file__).resolve().parent.parent
#: aws-cdk-lib records an acknowledgment as ``Annotation::<id>`` since 2.262.1 and as
#: ``annotation::<id>`` (some IDs) or ``<id>`` before.
ACK_NAMESPACE = re.compile(r"^[Aa]nnotation::")


def user_table(stack: cdk.Stack, name: str, **kw: Any) -> dynamodb.Table:
    """A table that passes the pack itself, so findings can only come from the construct."""
    return dynamodb.Table(
        stack,
        name,
        partition_key=dynamodb.Attribute(name="id", type=dynamodb.AttributeType.STRING),
        point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
            point_in_time_recovery_enabled=True
        ),
        **kw,
    )


def defaults(stack: cdk.Stack) -> StreamScavenger:
    return StreamScavenger(
        stack,
        "Scavenger",
        source_table=user_table(stack, "Source"),
        target_table=user_table(stack, "Target"),
    )


def customer_keys(stack: cdk.Stack) -> StreamScavenger:
    key = kms.Key(stack, "Key", enable_key_rotation=True)
    cmk = {"encryption": dynamodb.TableEncryption.CUSTOMER_MANAGED, "encryption_key": key}
    return StreamScavenger(
        stack,
        "Scavenger",
        source_table=user_table(stack, "Source", **cmk),
        target_table=user_table(stack, "Target", **cmk),
    )


def everything_on(stack: cdk.Stack) -> StreamScavenger:
    topic = sns.Topic(
        stack,
        "Pager",
        enforce_ssl=True,
        master_key=kms.Key(stack, "TopicKey", enable_key_rotation=True),
    )
    return StreamScavenger(
        stack,
        "Scavenger",
        source_table=user_table(stack, "Source"),
        target_table=user_table(stack, "Target"),
        key_mapping={"id": "ref"},
        event_names=["INSERT", "REMOVE"],
        alarm_topic=topic,
        dashboard=True,
    )


def several_targets(stack: cdk.Stack) -> StreamScavenger:
    key = kms.Key(stack, "Key", enable_key_rotation=True)
    cmk = {"encryption": dynamodb.TableEncryption.CUSTOMER_MANAGED, "encryption_key": key}
    return StreamScavenger(
        stack,
        "Scavenger",
        source_table=user_table(stack, "Source"),
        targets=[
            ScavengerTarget(user_table(stack, "Plain")),
            ScavengerTarget(user_table(stack, "Sealed", **cmk), event_names=["REMOVE"]),
        ],
        dashboard=True,
    )


def with_backfill(stack: cdk.Stack) -> StreamScavenger:
    """The backfill state machine and its worker, beside the scavenger."""
    return StreamScavenger(
        stack,
        "Scavenger",
        source_table=user_table(stack, "Source"),
        target_table=user_table(stack, "Target"),
        backfill=True,
    )


def nag_findings(build: Any) -> list[tuple[str, str]]:
    stack = cdk.Stack(cdk.App(), "Nag")
    build(stack)
    report = AwsSolutionsChecks().validate_scope(stack)
    return [(v.rule_name, str(v.violating_resources[0].locations)) for v in report.violations]


@pytest.mark.parametrize(
    "build",
    [defaults, customer_keys, everything_on, several_targets, with_backfill],
    ids=["defaults", "customer-keys", "everything-on", "several-targets", "backfill"],
)
def test_cdk_nag_aws_solutions_finds_nothing(build: Any) -> None:
    assert nag_findings(build) == []


def test_each_acknowledgment_is_needed() -> None:
    """Without the construct's acknowledgments the pack reports exactly what they cover."""
    from stream_scavenger import compliance

    original = compliance.acknowledge
    compliance.acknowledge = lambda scope, *acks: None  # type: ignore[assignment]
    try:
        plain = {rule for rule, _ in nag_findings(defaults)}
        keyed = {rule for rule, _ in nag_findings(customer_keys)}
        backfill = nag_findings(with_backfill)
    finally:
        compliance.acknowledge = original
    assert plain == {"AwsSolutions-IAM5[Resource::*]", "AwsSolutions-SQS3"}
    assert keyed - plain == {
        "AwsSolutions-IAM5[Action::kms:GenerateDataKey*]",
        "AwsSolutions-IAM5[Action::kms:ReEncrypt*]",
    }
    # the state machine's role: logs and X-Ray on *, and the worker's versions
    assert {rule for rule, _ in backfill} - plain == {
        "AwsSolutions-IAM5[Resource::<ScavengerBackfillFunctionD457E673.Arn>:*]"
    }


def test_acknowledgments_carry_reasons() -> None:
    stack = cdk.Stack(cdk.App(), "Reasons")
    scavenger = defaults(stack)
    recorded = [
        entry.data
        for node in scavenger.node.find_all()
        for entry in node.node.metadata
        if entry.type == cdk.Validations.ACKNOWLEDGED_RULES_METADATA_KEY
    ]
    acknowledged = {
        ACK_NAMESPACE.sub("", rule): reason for data in recorded for rule, reason in data.items()
    }
    assert set(acknowledged) == {"AwsSolutions-IAM5[Resource::*]", "AwsSolutions-SQS3"}
    assert all(len(reason) > 40 for reason in acknowledged.values())


@pytest.fixture(scope="module")
def synthesized_templates(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    out = tmp_path_factory.mktemp("lint")
    app = cdk.App(outdir=str(out))
    for build in (defaults, customer_keys, everything_on, several_targets, with_backfill):
        build(cdk.Stack(app, build.__name__.replace("_", "-")))
    imported = cdk.Stack(app, "imported")
    StreamScavenger(
        imported,
        "Scavenger",
        source_table=dynamodb.Table.from_table_attributes(
            imported,
            "Source",
            table_name="source",
            table_stream_arn="arn:aws:dynamodb:us-east-1:123456789012:table/source/stream/2026-01-01T00:00:00.000",
        ),
        target_table=dynamodb.Table.from_table_name(imported, "Target", "target"),
        key_mapping={"id": "id"},
    )
    app.synth()
    example = out / "example"
    run_app(ROOT / "examples" / "app.py", example)
    if schema_major() <= INTEG_RUNNER_MAX_SCHEMA:
        # Kept true by the integ-runner snapshot test (tests/test_integ_snapshots.py).
        integ = sorted((ROOT / "integ").glob("*.snapshot/*.template.json"))
    else:  # no integ-runner snapshots of this version: the apps synthesized now
        integ = sorted(p for app in apps() for p in synthesized(app).glob("*.template.json"))
    return sorted(out.glob("*.template.json")) + sorted(example.glob("*.template.json")) + integ


def run_app(app: Path, outdir: Path) -> None:
    subprocess.run(
        [sys.executable, str(app)],
        cwd=app.parent,
        env={**os.environ, "CDK_OUTDIR": str(outdir)},
        check=True,
        capture_output=True,
    )


@pytest.mark.slow  # cfn-lint over 16 templates, ~25 s (+ the integ apps on the newest)
def test_cfn_lint_finds_no_errors(synthesized_templates: list[Path]) -> None:
    assert len(synthesized_templates) == 7 + 9  # 6 variants, the example, 4 integ apps' 9 stacks
    result = subprocess.run(
        [
            Path(sys.executable).parent / "cfn-lint",
            "--format",
            "parseable",
            *map(str, synthesized_templates),
        ],
        capture_output=True,
        text=True,
    )
    errors = [line for line in result.stdout.splitlines() if ":E" in line]
    assert errors == [], result.stdout
    assert result.returncode in (0, 4, 8, 12), result.stdout + result.stderr  # warnings/infos only
