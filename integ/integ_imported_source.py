"""Imported tables: the source by name and stream ARN, the target by name with key_mapping.

The tables live in one stack and are imported into the scavenger's stack, the way a
team adds a scavenger to tables another stack owns.
"""

import aws_cdk as cdk
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import integ_tests_alpha as integ
from checks import eventually, no_dead_letters

from stream_scavenger import StreamScavenger

app = cdk.App()
tables = cdk.Stack(app, "StreamScavengerIntegTables")
key = {
    "partition_key": dynamodb.Attribute(name="id", type=dynamodb.AttributeType.STRING),
    "billing_mode": dynamodb.BillingMode.PAY_PER_REQUEST,
}
source = dynamodb.Table(tables, "Source", stream=dynamodb.StreamViewType.KEYS_ONLY, **key)
target = dynamodb.Table(tables, "Target", **key)
cdk.RemovalPolicies.of(tables).destroy()

stack = cdk.Stack(app, "StreamScavengerIntegImported")
scavenger = StreamScavenger(
    stack,
    "Scavenger",
    source_table=dynamodb.Table.from_table_attributes(
        stack,
        "ImportedSource",
        table_name=source.table_name,
        table_stream_arn=source.table_stream_arn,
    ),
    target_table=dynamodb.Table.from_table_name(stack, "ImportedTarget", target.table_name),
    key_mapping={"id": "id"},
)
cdk.RemovalPolicies.of(stack).destroy()

test = integ.IntegTest(app, "ImportedTables", test_cases=[tables, stack])
calls = test.assertions


def put(table: dynamodb.Table, item_id: str) -> integ.IApiCall:
    return calls.aws_api_call(
        "DynamoDB", "putItem", {"TableName": table.table_name, "Item": {"id": {"S": item_id}}}
    )


remaining = calls.aws_api_call(
    "DynamoDB", "scan", {"TableName": target.table_name, "ConsistentRead": True}
)
eventually(remaining, {"Count": 1, "Items": [{"id": {"S": "keep"}}]})
dead_letters = no_dead_letters(test, scavenger)

put(target, "gone").next(put(target, "keep")).next(put(source, "gone")).next(remaining).next(
    dead_letters
)

app.synth()
