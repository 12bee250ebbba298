"""The function's role: read one stream, write its logs, delete from the targets, nothing else."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from constructs import Construct

from . import compliance
from .targets import ResolvedTarget


def create_role(
    scope: Construct,
    log_group: logs.ILogGroup,
    source_table: dynamodb.ITable,
    stream_arn: str,
    targets: Sequence[ResolvedTarget],
    dry_run: bool,
) -> iam.Role:
    """A role with an inline policy only: write the logs, read the stream, delete from the
    targets (no write permission at all for a dry run). With ``tracing``, the function adds
    X-Ray's two actions (:func:`.function.create_function`)."""
    role = iam.Role(
        scope,
        "Role",
        assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
        description="stream-scavenger: read one stream, delete from "
        + ("one table" if len(targets) == 1 else f"{len(targets)} tables"),
    )
    log_group.grant_write(role)
    grant_stream_read(role, source_table, stream_arn)
    if not dry_run:
        grant_deletes(role, [t.table for t in targets])
    return role


def grant_stream_read(role: iam.Role, table: dynamodb.ITable, stream_arn: str) -> None:
    """Read the one stream the mapping reads (``stream_arn``), and decrypt it.

    Not ``table.grant_stream_read()``: it grants on ``table.table_stream_arn``, which an
    imported table without ``table_stream_arn=`` lacks (it raises, without saying how to pass
    one) and which a ``TableV2`` reports whether it has a stream or not; and ``TableV2``'s
    puts ``dynamodb:ListStreams`` on the stream ARN, where it grants nothing (ListStreams has
    no resource-level permissions: aws/aws-cdk#34575).
    """
    role.add_to_policy(
        iam.PolicyStatement(
            actions=[
                "dynamodb:DescribeStream",
                "dynamodb:GetRecords",
                "dynamodb:GetShardIterator",
            ],
            resources=[stream_arn],
        )
    )
    # The event source mapping calls ListStreams, which has no resource-level permissions.
    role.add_to_policy(iam.PolicyStatement(actions=["dynamodb:ListStreams"], resources=["*"]))
    compliance.acknowledge(role, compliance.LIST_STREAMS_WILDCARD)
    if table.encryption_key is not None:
        table.encryption_key.grant(role, "kms:Decrypt")


def grant_deletes(role: iam.Role, tables: Sequence[dynamodb.ITable]) -> None:
    """``BatchWriteItem`` on the target tables, and their customer-managed keys.

    Not ``table.grant_write_data()``: it also grants ``PutItem``, ``UpdateItem``,
    ``DeleteItem`` and ``DescribeTable``, which the scavenger never calls and must not have.
    """
    role.add_to_policy(
        iam.PolicyStatement(
            actions=["dynamodb:BatchWriteItem"], resources=[t.table_arn for t in tables]
        )
    )
    # Writes to a table under a customer-managed key use the key both ways.
    actions = ("kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey*", "kms:ReEncrypt*")
    keys = [t.encryption_key for t in tables if t.encryption_key is not None]
    for key in keys:
        key.grant(role, *actions)
    if keys:
        compliance.acknowledge(role, *compliance.kms_wildcard_actions(*actions))
