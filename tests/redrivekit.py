"""Helpers of the redrive tests: thin wrappers around real clients, and queue/table reads.

DynamoDB Local never returns an empty ``GetRecords`` page before later records and keeps
one shard per stream; SQS's short polling may answer empty while messages wait, and SQS
may deliver a message twice. The wrappers below put those answers in front of the real
clients (DynamoDB Local's streams, moto's SQS) so redrive meets them on loopback.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from stream_scavenger import cli
from stream_scavenger.local.runner import lambda_record, on_failure_message


class PagedStreams:
    """The real streams client with DynamoDB Streams' other answers put in.

    - ``page``: at most this many records per ``GetRecords`` page (paging);
    - ``empty_calls``: these ``GetRecords`` calls (1-based) answer an empty page whose
      next iterator reads the same position again;
    - ``records_then``: after this many records in all, either ``"empty"`` pages forever
      (an open shard that stays empty) or ``"closed"`` (no next iterator: the shard ended).
    """

    def __init__(
        self,
        real: Any,
        *,
        page: int = 1000,
        empty_calls: frozenset[int] = frozenset(),
        records_then: tuple[int, str] | None = None,
    ) -> None:
        self.real, self.page, self.empty_calls = real, page, empty_calls
        self.records_then = records_then
        self.calls = 0
        self.delivered = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def get_records(self, ShardIterator: str, Limit: int = 1000) -> dict[str, Any]:  # noqa: N803
        self.calls += 1
        if ShardIterator == "stuck" or self.calls in self.empty_calls:
            return {"Records": [], "NextShardIterator": ShardIterator}
        page = dict(self.real.get_records(ShardIterator=ShardIterator, Limit=min(Limit, self.page)))
        if self.records_then is not None:
            limit, then = self.records_then
            room = max(0, limit - self.delivered)
            if len(page["Records"]) >= room:
                page["Records"] = page["Records"][:room]
                if then == "closed":
                    page.pop("NextShardIterator", None)
                else:
                    page["NextShardIterator"] = "stuck"
        self.delivered += len(page["Records"])
        return page


class SqsAnswers:
    """The real SQS client; receives answer as SQS may.

    - ``short_poll_empty``: the first receive without long polling (``WaitTimeSeconds``
      under 1) answers no message, as short polling does when it samples servers that hold
      none of the queue's messages;
    - ``duplicate_on``: this receive call (1-based) answers the first message received
      again, as SQS's at-least-once delivery may.
    """

    def __init__(self, real: Any, *, short_poll_empty: bool = False, duplicate_on: int = 0) -> None:
        self.real, self.short_poll_empty, self.duplicate_on = real, short_poll_empty, duplicate_on
        self.receives = 0
        self.first: dict[str, Any] | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def receive_message(self, **kwargs: Any) -> dict[str, Any]:
        self.receives += 1
        if self.short_poll_empty and int(kwargs.get("WaitTimeSeconds", 0)) < 1:
            self.short_poll_empty = False
            return {}
        if self.receives == self.duplicate_on and self.first is not None:
            return {"Messages": [self.first]}
        answer: dict[str, Any] = self.real.receive_message(**kwargs)
        if self.first is None and answer.get("Messages"):
            self.first = answer["Messages"][0]
        return answer


def wrap_clients(monkeypatch: pytest.MonkeyPatch, **wrappers: Callable[[Any], Any]) -> None:
    """Make ``stream-scavenger redrive`` use wrapped clients (by service name)."""
    real = cli._clients

    def clients(*args: Any, **kwargs: Any) -> dict[str, Any]:
        made = real(*args, **kwargs)
        return {name: wrappers.get(name, lambda c: c)(c) for name, c in made.items()}

    monkeypatch.setattr(cli, "_clients", clients)


def stream_records(streams: Any, stream_arn: str) -> tuple[str, list[dict[str, Any]]]:
    """The one shard of a DynamoDB Local stream and its records, Lambda-shaped."""
    (shard,) = streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"]
    iterator = streams.get_shard_iterator(
        StreamArn=stream_arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    records: list[dict[str, Any]] = []
    while iterator:
        page = streams.get_records(ShardIterator=iterator, Limit=1000)
        if not page["Records"]:
            break  # DynamoDB Local: the end of what is there now
        records += [lambda_record(r, stream_arn, "us-east-1") for r in page["Records"]]
        iterator = page.get("NextShardIterator")
    return shard["ShardId"], records


LOCAL_FUNCTION_ARN = "arn:aws:lambda:us-east-1:000000000000:function:local"


def send_range(
    sqs: Any,
    queue_url: str,
    shard_id: str,
    stream_arn: str,
    batch: list[dict[str, Any]],
    function_arn: str = LOCAL_FUNCTION_ARN,
) -> str:
    """Send Lambda's on-failure message for ``batch``; return the message's ID."""
    body = on_failure_message(
        batch, shard_id, stream_arn, "RetryAttemptsExhausted", 11, function_arn
    )
    return str(sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(body))["MessageId"])


def queue_depth(sqs: Any, queue_url: str) -> int:
    """Messages in the queue, visible or not."""
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def visible(sqs: Any, queue_url: str) -> int:
    """Messages in the queue that a receive can get now."""
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"])


def item_count(ddb: Any, table: str) -> int:
    return int(ddb.scan(TableName=table, Select="COUNT")["Count"])
