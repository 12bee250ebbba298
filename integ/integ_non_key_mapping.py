"""A renamed, non-key mapping on MODIFY and REMOVE (NEW_AND_OLD_IMAGES stream).

orders.holdRef (not a key) names holds.holdId. A MODIFY of an order deletes its
hold (read from the new image), a REMOVE deletes its hold (from the old image),
an INSERT deletes nothing.
"""

import aws_cdk as cdk
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import integ_tests_alpha as integ
from checks import eventually

from stream_scavenger import StreamScavenger

app = cdk.App()
stack = cdk.Stack(app, "StreamScavengerIntegNonKey")
orders = dynamodb.Table(
    stack,
    "Orders",
    partition_key=dynamodb.Attribute(name="orderId", type=dynamodb.AttributeType.STRING),
    billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
)
holds = dynamodb.Table(
    stack,
    "Holds",
    partition_key=dynamodb.Attribute(name="holdId", type=dynamodb.AttributeType.STRING),
    billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
)
StreamScavenger(
    stack,
    "Scavenger",
    source_table=orders,
    target_table=holds,
    key_mapping={"holdId": "holdRef"},
    event_names=["MODIFY", "REMOVE"],
    batch_size=10,
)
cdk.RemovalPolicies.of(stack).destroy()

test = integ.IntegTest(app, "NonKeyMapping", test_cases=[stack])
calls = test.assertions


def put_hold(hold_id: str) -> integ.IApiCall:
    return calls.aws_api_call(
        "DynamoDB", "putItem", {"TableName": holds.table_name, "Item": {"holdId": {"S": hold_id}}}
    )


def put_order(order_id: str, hold_ref: str) -> integ.IApiCall:
    item = {"orderId": {"S": order_id}, "holdRef": {"S": hold_ref}}
    return calls.aws_api_call("DynamoDB", "putItem", {"TableName": orders.table_name, "Item": item})


modify = calls.aws_api_call(
    "DynamoDB",
    "updateItem",
    {
        "TableName": orders.table_name,
        "Key": {"orderId": {"S": "o-modified"}},
        "UpdateExpression": "SET paid = :t",
        "ExpressionAttributeValues": {":t": {"BOOL": True}},
    },
)
remove = calls.aws_api_call(
    "DynamoDB",
    "deleteItem",
    {"TableName": orders.table_name, "Key": {"orderId": {"S": "o-removed"}}},
)
remaining = calls.aws_api_call(
    "DynamoDB", "scan", {"TableName": holds.table_name, "ConsistentRead": True}
)
# Only the hold whose order was merely inserted is left.
eventually(remaining, {"Count": 1, "Items": [{"holdId": {"S": "h-inserted"}}]})

(
    put_hold("h-modified")
    .next(put_hold("h-removed"))
    .next(put_hold("h-inserted"))
    .next(put_order("o-modified", "h-modified"))
    .next(put_order("o-removed", "h-removed"))
    .next(put_order("o-inserted", "h-inserted"))
    .next(modify)
    .next(remove)
    .next(remaining)
)

app.synth()
