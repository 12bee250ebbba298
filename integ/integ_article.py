"""The article's scenario: messages -> staging, same key, KEYS_ONLY stream.

Deployed by ``integ-runner``: a staging copy disappears once its message arrives,
an unrelated staging item stays, and nothing reaches the on-failure queue.
"""

import aws_cdk as cdk
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import integ_tests_alpha as integ
from checks import eventually, no_dead_letters

from stream_scavenger import StreamScavenger

app = cdk.App()
stack = cdk.Stack(app, "StreamScavengerIntegArticle")
key = {
    "partition_key": dynamodb.Attribute(name="messageId", type=dynamodb.AttributeType.STRING),
    "sort_key": dynamodb.Attribute(name="createdAt", type=dynamodb.AttributeType.NUMBER),
    "billing_mode": dynamodb.BillingMode.PAY_PER_REQUEST,
}
messages = dynamodb.Table(stack, "Messages", **key)
staging = dynamodb.Table(stack, "Staging", **key)
scavenger = StreamScavenger(stack, "Scavenger", source_table=messages, target_table=staging)
cdk.RemovalPolicies.of(stack).destroy()

test = integ.IntegTest(app, "ArticleScenario", test_cases=[stack])
calls = test.assertions


def put(table: dynamodb.Table, message_id: str) -> integ.IApiCall:
    item = {"messageId": {"S": message_id}, "createdAt": {"N": "1767225600"}}
    return calls.aws_api_call("DynamoDB", "putItem", {"TableName": table.table_name, "Item": item})


staging_count = calls.aws_api_call(
    "DynamoDB", "scan", {"TableName": staging.table_name, "Select": "COUNT", "ConsistentRead": True}
)
eventually(staging_count, {"Count": 1})

unrelated = calls.aws_api_call(
    "DynamoDB",
    "getItem",
    {
        "TableName": staging.table_name,
        "Key": {"messageId": {"S": "unrelated"}, "createdAt": {"N": "1767225600"}},
        "ConsistentRead": True,
    },
)
unrelated.expect(integ.ExpectedResult.object_like({"Item": {"messageId": {"S": "unrelated"}}}))

dead_letters = no_dead_letters(test, scavenger)

put(staging, "m-1").next(put(staging, "unrelated")).next(put(messages, "m-1")).next(
    staging_count
).next(unrelated).next(dead_letters)

app.synth()
