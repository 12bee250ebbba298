"""Two targets from one stream: messages -> staging (same key) and a single-table design.

Deployed by ``integ-runner``: one message removes its staging copy and its
``STAGING#``/``MSG#`` item in the design table, through one function and one
event source mapping; unrelated items stay and nothing reaches the on-failure queue. Then
the backfill (``backfill=True``): a staging copy written again while its message stays in
the source is deleted by one execution of the backfill state machine, and the unrelated
items still stay.
"""

import aws_cdk as cdk
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import integ_tests_alpha as integ
from checks import eventually, no_dead_letters

from stream_scavenger import ScavengerTarget, StreamScavenger

app = cdk.App()
stack = cdk.Stack(app, "StreamScavengerIntegTwoTargets")
S, N = dynamodb.AttributeType.STRING, dynamodb.AttributeType.NUMBER
PAY = dynamodb.BillingMode.PAY_PER_REQUEST
message_key = {
    "partition_key": dynamodb.Attribute(name="messageId", type=S),
    "sort_key": dynamodb.Attribute(name="createdAt", type=N),
    "billing_mode": PAY,
}
messages = dynamodb.Table(stack, "Messages", **message_key)
staging = dynamodb.Table(stack, "Staging", **message_key)
design = dynamodb.Table(
    stack,
    "Design",
    partition_key=dynamodb.Attribute(name="pk", type=S),
    sort_key=dynamodb.Attribute(name="sk", type=S),
    billing_mode=PAY,
)
scavenger = StreamScavenger(
    stack,
    "Scavenger",
    source_table=messages,
    targets=[
        ScavengerTarget(staging),
        ScavengerTarget(design, key_mapping={"pk": "STAGING#{messageId}", "sk": "MSG#{createdAt}"}),
    ],
    backfill=True,
)
cdk.RemovalPolicies.of(stack).destroy()

test = integ.IntegTest(app, "TwoTargets", test_cases=[stack])
calls = test.assertions


def put(table: dynamodb.Table, item: dict[str, str]) -> integ.IApiCall:
    typed = {k: {"N" if k == "createdAt" else "S": v} for k, v in item.items()}
    return calls.aws_api_call("DynamoDB", "putItem", {"TableName": table.table_name, "Item": typed})


def count(table: dynamodb.Table) -> integ.IApiCall:
    return calls.aws_api_call(
        "DynamoDB",
        "scan",
        {"TableName": table.table_name, "Select": "COUNT", "ConsistentRead": True},
    )


staging_left = eventually(count(staging), {"Count": 1})
design_left = eventually(count(design), {"Count": 1})
unrelated = calls.aws_api_call(
    "DynamoDB",
    "getItem",
    {
        "TableName": design.table_name,
        "Key": {"pk": {"S": "STAGING#unrelated"}, "sk": {"S": "MSG#1767225600"}},
        "ConsistentRead": True,
    },
)
unrelated.expect(integ.ExpectedResult.object_like({"Item": {"pk": {"S": "STAGING#unrelated"}}}))
assert scavenger.backfill is not None
machine = scavenger.backfill.state_machine.state_machine_arn
started = calls.aws_api_call("StepFunctions", "startExecution", {"stateMachineArn": machine})
finished = eventually(
    calls.aws_api_call(
        "StepFunctions",
        "describeExecution",
        {"executionArn": started.get_att_string("executionArn")},
    ),
    {"status": "SUCCEEDED"},
)
staging_after_backfill = eventually(count(staging), {"Count": 1})

put(staging, {"messageId": "m-1", "createdAt": "1767225600"}).next(
    put(staging, {"messageId": "unrelated", "createdAt": "1767225600"})
).next(put(design, {"pk": "STAGING#m-1", "sk": "MSG#1767225600"})).next(
    put(design, {"pk": "STAGING#unrelated", "sk": "MSG#1767225600"})
).next(put(messages, {"messageId": "m-1", "createdAt": "1767225600"})).next(staging_left).next(
    design_left
).next(unrelated).next(no_dead_letters(test, scavenger)).next(
    put(staging, {"messageId": "m-1", "createdAt": "1767225600"})
).next(started).next(finished).next(staging_after_backfill)

app.synth()
