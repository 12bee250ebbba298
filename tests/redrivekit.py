"""Helpers of the redrive tests: thin wrappers around real clients, queue/table reads, and
the tables and queue of records given up on that both redrive test modules start from.

DynamoDB Local never returns an empty ``GetRecords`` page before later records and keeps
one shard per stream; SQS's short polling may answer empty while messages wait, and SQS
may deliver a message twice. The wrappers below put those answers in front of the real
clients (DynamoDB Local's streams, moto's SQS) so redrive meets them on loopback.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from stream_scavenger import cli
from stream_scavenger.local.assembly import FunctionDef, load_assembly
from stream_scavenger.local.dynamodb_local import local_client
from stream_scavenger.local.event_source_mapping import (
    LocalEventSourceMapping,
    SqsDestination,
    create_table,
    lambda_record,
    on_failure_message,
    table_names_for,
)


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


def function_arn_of(stack_name: str, function: FunctionDef) -> str:
    """An ARN of the deployed function, named as CloudFormation names a function:
    ``<stack>-<logical ID>-<suffix>``."""
    name = f"{stack_name}-{function.logical_id}-AbCdEf123456"
    return f"arn:aws:lambda:us-east-1:123456789012:function:{name}"


def send_range(
    sqs: Any,
    queue_url: str,
    shard_id: str,
    stream_arn: str,
    batch: list[dict[str, Any]],
    function_arn: str,
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


def always_fails(event: Any) -> Any:
    """A handler that reports the first record of every batch: all of it is retried."""
    first = event["Records"][0]["dynamodb"]["SequenceNumber"]
    return {"batchItemFailures": [{"itemIdentifier": first}]}


def give_up_on_everything(
    assembly: Path,
    clients: tuple[Any, Any],
    sqs_endpoint: str,
    endpoint_url: str,
    fill: Callable[[Any, str, str], None],
    prefix: str = "redrive",
    handler: Callable[[Any], Any] = always_fails,
) -> dict[str, Any]:
    """The assembly's tables, new (unique names: tables and queues outlive a test), filled
    by ``fill(ddb, messages table, staging table)``; the local mapping reads the messages
    stream with ``handler`` (by default one that always fails) and sends what it gives up
    on to a new queue.

    Returns what the tests use: the assembly and its function, the table names and
    ``--table`` arguments, the stream, the queue, the function's ARN, the run's stats.
    """
    ddb, ddb_streams = clients
    (stack,) = load_assembly(assembly)
    (function,) = stack.functions
    run_id = uuid.uuid4().hex[:10]
    names = table_names_for(stack.tables, prefix=f"{prefix}{run_id}-")
    arns = {lid: create_table(ddb, names[lid], t) for lid, t in stack.tables.items()}
    messages_id = next(lid for lid in names if lid.startswith("Messages"))
    staging_id = next(lid for lid in names if lid.startswith("Staging"))
    fill(ddb, names[messages_id], names[staging_id])
    sqs = local_client("sqs", sqs_endpoint)
    queue_url = sqs.create_queue(QueueName=f"{prefix}{run_id}")["QueueUrl"]
    function_arn = function_arn_of(stack.name, function)
    run = LocalEventSourceMapping(
        ddb_streams,
        arns[messages_id],
        handler,
        function.mapping.properties,
        on_failure=SqsDestination(sqs, queue_url),
        function_arn=function_arn,
    ).run()
    return {
        "assembly": assembly,
        "function": function,
        "function_arn": function_arn,
        "names": names,
        "staging": names[staging_id],
        "stream_arn": arns[messages_id],
        "queue_url": queue_url,
        "sqs": sqs,
        "sqs_endpoint": sqs_endpoint,
        "table_args": [arg for lid, n in names.items() for arg in ("--table", f"{lid}={n}")],
        "endpoint": endpoint_url,
        "run": run,
    }


def redrive_cli(g: dict[str, Any], *extra: str, config: Sequence[str] | None = None) -> int:
    """``stream-scavenger redrive`` on the queue of :func:`give_up_on_everything`; the
    function's configuration from its cloud assembly unless ``config`` says otherwise."""
    where = config if config is not None else ("--cloud-assembly", str(g["assembly"]))
    tables = g["table_args"] if "--cloud-assembly" in where else []
    return cli.main([
        "redrive", "--queue-url", g["queue_url"], *where, *tables,
        "--endpoint-url", g["endpoint"], "--sqs-endpoint-url", g["sqs_endpoint"], *extra,
    ])  # fmt: skip
