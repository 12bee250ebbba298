"""Assertions the integ apps share (not an integ test itself: integ-runner runs integ_*.py)."""

import aws_cdk as cdk
from aws_cdk import integ_tests_alpha as integ

from stream_scavenger import StreamScavenger


def no_dead_letters(test: integ.IntegTest, scavenger: StreamScavenger) -> integ.IApiCall:
    """Nothing reached the scavenger's on-failure queue."""
    assert scavenger.dead_letter_queue is not None
    call = test.assertions.aws_api_call(
        "SQS",
        "getQueueAttributes",
        {
            "QueueUrl": scavenger.dead_letter_queue.queue_url,
            "AttributeNames": ["ApproximateNumberOfMessages"],
        },
    )
    call.expect(
        integ.ExpectedResult.object_like({"Attributes": {"ApproximateNumberOfMessages": "0"}})
    )
    return call


def eventually(call: integ.IApiCall, expected: dict[str, object]) -> integ.IApiCall:
    """Poll ``call`` (up to 5 minutes) until its result contains ``expected``."""
    call.expect(integ.ExpectedResult.object_like(expected))
    call.wait_for_assertions(
        total_timeout=cdk.Duration.minutes(5), interval=cdk.Duration.seconds(15)
    )
    return call
