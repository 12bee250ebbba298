"""Acknowledgments, with reasons, of policy-validation findings that are by design.

They use aws-cdk-lib's own ``Validations`` API, so cdk-nag (3+) users need no
suppression for anything the construct creates, and the library needs no cdk-nag.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, Validations
from constructs import IConstruct

LIST_STREAMS_WILDCARD = Acknowledgment(
    id="AwsSolutions-IAM5[Resource::*]",
    reason="dynamodb:ListStreams, which the event source mapping calls, supports no "
    "resource-level permissions; every other action of the policy names its resource",
)
#: Replaces LIST_STREAMS_WILDCARD's reason (one finding ID per role) when tracing is on.
WILDCARD_RESOURCES_WITH_XRAY = Acknowledgment(
    id=LIST_STREAMS_WILDCARD.id,
    reason="dynamodb:ListStreams, which the event source mapping calls, and "
    "xray:PutTraceSegments and xray:PutTelemetryRecords, which tracing adds, support no "
    "resource-level permissions; every other action of the policy names its resource",
)
QUEUE_IS_A_DLQ = Acknowledgment(
    id="AwsSolutions-SQS3",
    reason="this queue is itself the dead-letter (on-failure) destination of the event "
    "source mapping; a dead-letter queue of a dead-letter queue adds nothing",
)


def kms_wildcard_actions(*actions: str) -> list[Acknowledgment]:
    """The KMS action families DynamoDB needs on a customer-managed table key."""
    return [
        Acknowledgment(
            id=f"AwsSolutions-IAM5[Action::{action}]",
            reason="DynamoDB needs this KMS action family on the table's customer-managed "
            "key; the grant names that one key",
        )
        for action in actions
        if action.endswith("*")
    ]


def acknowledge(scope: IConstruct, *acknowledgments: Acknowledgment) -> None:
    """Record the acknowledgments on ``scope`` (they cover the constructs below it)."""
    if acknowledgments:
        Validations.of(scope).acknowledge(*acknowledgments)


def backfill_machine(worker: str) -> list[Acknowledgment]:
    """The backfill state machine's role, as aws-cdk-lib grants it: logs and X-Ray (no
    resource-level permissions) and the worker's versions (``worker``: its logical ID)."""
    return [
        Acknowledgment(
            id="AwsSolutions-IAM5[Resource::*]",
            reason="logging to CloudWatch Logs (logs:CreateLogDelivery and the rest) and X-Ray "
            "tracing support no resource-level permissions; aws-cdk-lib grants them on * for "
            "every state machine with logs and tracing on",
        ),
        Acknowledgment(
            id=f"AwsSolutions-IAM5[Resource::<{worker}.Arn>:*]",
            reason="lambda:InvokeFunction on the worker's versions and aliases, as "
            "aws-cdk-lib's LambdaInvoke grants it; the function is the backfill's own worker",
        ),
    ]
