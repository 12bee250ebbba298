"""The benchmark's two-target case: ``CDK_OUTDIR=out python benchmarks/two_targets_app.py``.

Mirrors ``integ/integ_two_targets.py`` (without its assertions): a messages table keyed like
``examples/app.py``, its staging copy with the same key, and a single-table-design table
keyed ``pk``/``sk`` with ``STAGING#{messageId}`` / ``MSG#{createdAt}``. Two stacks:

``StreamScavengerBenchTwoTargets``
    One scavenger with both targets (``targets=[...]``): one function, one mapping.
``StreamScavengerBenchTwoScavengers``
    What users would otherwise deploy: two single-target scavengers on the same stream,
    one per table. (Two mappings on one stream take both of its 2 reader slots per shard.)
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_dynamodb as dynamodb

from stream_scavenger import ScavengerTarget, StreamScavenger

TWO_TARGETS_STACK = "StreamScavengerBenchTwoTargets"
TWO_SCAVENGERS_STACK = "StreamScavengerBenchTwoScavengers"
#: The design table's key, rendered from the message's key (as in integ_two_targets.py).
DESIGN_KEY_MAPPING = {"pk": "STAGING#{messageId}", "sk": "MSG#{createdAt}"}

S, N = dynamodb.AttributeType.STRING, dynamodb.AttributeType.NUMBER


def table(
    stack: cdk.Stack, name: str, partition: dynamodb.Attribute, sort: dynamodb.Attribute
) -> dynamodb.Table:
    return dynamodb.Table(
        stack,
        name,
        partition_key=partition,
        sort_key=sort,
        billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
        removal_policy=cdk.RemovalPolicy.DESTROY,
    )


def tables(stack: cdk.Stack) -> tuple[dynamodb.Table, dynamodb.Table, dynamodb.Table]:
    """Messages, Staging (the same key) and Design (``pk``/``sk``, both strings)."""
    message_id = dynamodb.Attribute(name="messageId", type=S)
    created_at = dynamodb.Attribute(name="createdAt", type=N)
    return (
        table(stack, "Messages", message_id, created_at),
        table(stack, "Staging", message_id, created_at),
        table(
            stack,
            "Design",
            dynamodb.Attribute(name="pk", type=S),
            dynamodb.Attribute(name="sk", type=S),
        ),
    )


def main() -> None:
    app = cdk.App()

    one = cdk.Stack(app, TWO_TARGETS_STACK)
    messages, staging, design = tables(one)
    StreamScavenger(
        one,
        "Scavenger",
        source_table=messages,
        targets=[
            ScavengerTarget(staging),
            ScavengerTarget(design, key_mapping=DESIGN_KEY_MAPPING),
        ],
    )

    two = cdk.Stack(app, TWO_SCAVENGERS_STACK)
    messages, staging, design = tables(two)
    StreamScavenger(two, "StagingScavenger", source_table=messages, target_table=staging)
    StreamScavenger(
        two,
        "DesignScavenger",
        source_table=messages,
        target_table=design,
        key_mapping=DESIGN_KEY_MAPPING,
    )
    app.synth()


if __name__ == "__main__":
    main()
