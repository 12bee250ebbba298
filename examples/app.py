"""The article's scenario: a message lands in the messages table, so its staging copy must go.

Synthesize with ``python examples/app.py`` (writes ``cdk.out/``, or ``$CDK_OUTDIR``).
"""

import aws_cdk as cdk
from aws_cdk import aws_dynamodb as dynamodb

from stream_scavenger import StreamScavenger


class MessagesStack(cdk.Stack):
    """Messages and their staging copies, keyed the same way."""

    def __init__(self, scope: cdk.App, id: str) -> None:
        super().__init__(scope, id)
        key = {
            "partition_key": dynamodb.Attribute(
                name="messageId", type=dynamodb.AttributeType.STRING
            ),
            "sort_key": dynamodb.Attribute(name="createdAt", type=dynamodb.AttributeType.NUMBER),
            "billing_mode": dynamodb.BillingMode.PAY_PER_REQUEST,
            "removal_policy": cdk.RemovalPolicy.DESTROY,
        }
        messages = dynamodb.Table(self, "Messages", **key)
        staging = dynamodb.Table(self, "Staging", **key)

        # The stream on Messages is enabled by the construct (KEYS_ONLY is enough here).
        StreamScavenger(self, "Scavenger", source_table=messages, target_table=staging)


app = cdk.App()
MessagesStack(app, "StreamScavengerExample")
app.synth()
