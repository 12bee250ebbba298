"""Redrive end to end: records given up on by the mapping are replayed from the queue.

DynamoDB Local for the tables and the stream; SQS from moto's server on loopback,
since DynamoDB Local has no SQS (moto is not used for anything DynamoDB here).
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from moto.server import ThreadedMotoServer

from stream_scavenger.cli import main
from stream_scavenger.local.assembly import load_assembly
from stream_scavenger.local.check import example_app, synthesize
from stream_scavenger.local.dynamodb_local import local_client
from stream_scavenger.local.runner import (
    LocalEventSourceMapping,
    SqsDestination,
    create_table,
    table_names_for,
)

pytestmark = pytest.mark.ddb


@pytest.fixture(scope="module")
def sqs_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def given_up(sqs_endpoint: str, ddb_local: Any, ddb: Any, ddb_streams: Any) -> dict[str, Any]:
    """The example app's tables; 40 messages whose deletes all failed and went to the queue."""
    assembly = synthesize([sys.executable, str(example_app())])
    (stack,) = load_assembly(assembly)
    (function,) = stack.functions
    run_id = uuid.uuid4().hex[:10]  # unique per use: tables and queues outlive a test
    names = table_names_for(stack.tables, prefix=f"redrive{run_id}-")
    arns = {lid: create_table(ddb, names[lid], t) for lid, t in stack.tables.items()}
    messages_id = next(lid for lid in names if lid.startswith("Messages"))
    staging_id = next(lid for lid in names if lid.startswith("Staging"))
    keys = [{"messageId": {"S": f"m{i}"}, "createdAt": {"N": str(i)}} for i in range(40)]
    for key in keys:
        ddb.put_item(TableName=names[staging_id], Item=key)
        ddb.put_item(TableName=names[messages_id], Item=key)
    sqs_client = local_client("sqs", sqs_endpoint)
    queue_url = sqs_client.create_queue(QueueName=f"dlq{run_id}")["QueueUrl"]

    def always_fails(event: Any) -> Any:
        return {
            "batchItemFailures": [
                {"itemIdentifier": event["Records"][0]["dynamodb"]["SequenceNumber"]}
            ]
        }

    run = LocalEventSourceMapping(
        ddb_streams,
        arns[messages_id],
        always_fails,
        function.mapping.properties,
        on_failure=SqsDestination(sqs_client, queue_url),
    ).run()
    assert run.records_given_up == 40 and len(run.given_up) == 1  # one batch of 100 max
    return {
        "assembly": assembly,
        "names": names,
        "staging": names[staging_id],
        "keys": keys,
        "queue_url": queue_url,
        "sqs": sqs_client,
        "sqs_endpoint": sqs_endpoint,
        "table_args": [arg for lid, n in names.items() for arg in ("--table", f"{lid}={n}")],
        "endpoint": ddb_local.endpoint_url,
    }


def redrive_cli(g: dict[str, Any], *extra: str) -> int:
    return main(
        [
            "redrive",
            "--queue-url",
            g["queue_url"],
            "--cloud-assembly",
            str(g["assembly"]),
            *g["table_args"],
            "--endpoint-url",
            g["endpoint"],
            "--sqs-endpoint-url",
            g["sqs_endpoint"],
            *extra,
        ]
    )


def staging_count(ddb: Any, table: str) -> int:
    return int(ddb.scan(TableName=table, Select="COUNT")["Count"])


def queue_depth(g: dict[str, Any]) -> int:
    attributes = g["sqs"].get_queue_attributes(
        QueueUrl=g["queue_url"],
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def test_the_message_lambda_would_send(given_up: dict[str, Any]) -> None:
    (message,) = given_up["sqs"].receive_message(
        QueueUrl=given_up["queue_url"], VisibilityTimeout=0
    )["Messages"]
    body = json.loads(message["Body"])
    assert body["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert body["DDBStreamBatchInfo"]["batchSize"] == 40


def test_dry_run_changes_nothing(
    given_up: dict[str, Any], ddb: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    assert redrive_cli(given_up, "--dry-run") == 0
    assert "messages: 1, records: 40, would redrive: 1" in capsys.readouterr().out
    assert staging_count(ddb, given_up["staging"]) == 40
    assert queue_depth(given_up) == 1
    assert given_up["sqs"].receive_message(QueueUrl=given_up["queue_url"]).get("Messages"), (
        "visible again"
    )


def test_redrive_deletes_the_keys_then_the_message(
    given_up: dict[str, Any], ddb: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    assert redrive_cli(given_up) == 0
    assert "messages: 1, records: 40, redriven: 1" in capsys.readouterr().out
    assert staging_count(ddb, given_up["staging"]) == 0
    assert queue_depth(given_up) == 0


def test_a_range_the_stream_no_longer_holds_is_reported_and_kept(
    given_up: dict[str, Any], ddb: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    (message,) = given_up["sqs"].receive_message(
        QueueUrl=given_up["queue_url"], VisibilityTimeout=0
    )["Messages"]
    body = json.loads(message["Body"])
    given_up["sqs"].delete_message(
        QueueUrl=given_up["queue_url"], ReceiptHandle=message["ReceiptHandle"]
    )
    info = body["DDBStreamBatchInfo"]
    start = info["startSequenceNumber"]
    info["startSequenceNumber"] = str(int(start) - 1).zfill(len(start))  # not its first: trimmed
    given_up["sqs"].send_message(QueueUrl=given_up["queue_url"], MessageBody=json.dumps(body))

    assert redrive_cli(given_up) == 1
    assert "no longer in the stream" in capsys.readouterr().out
    assert staging_count(ddb, given_up["staging"]) == 40
    assert queue_depth(given_up) == 1
