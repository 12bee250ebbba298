"""Redrive end to end: records given up on by the mapping are replayed from the queue.

DynamoDB Local for the tables and the stream; SQS from moto's server on loopback,
since DynamoDB Local has no SQS (moto is not used for anything DynamoDB here). The
answers DynamoDB Local and moto never give (an empty page before later records, a
closed shard, short polling's empty answer, a duplicate delivery) come from the thin
wrappers of ``redrivekit``.
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from moto.server import ThreadedMotoServer
from redrivekit import (
    PagedStreams,
    SqsAnswers,
    item_count,
    queue_depth,
    send_range,
    stream_records,
    visible,
    wrap_clients,
)

from stream_scavenger.cli import main
from stream_scavenger.local import redrive as redrive_module
from stream_scavenger.local.assembly import load_assembly
from stream_scavenger.local.check import example_app, synthesize
from stream_scavenger.local.dynamodb_local import LOCAL_CLIENT_SETTINGS, local_client
from stream_scavenger.local.runner import (
    LocalEventSourceMapping,
    SqsDestination,
    create_table,
    on_failure_message,
    table_names_for,
)
from stream_scavenger.runtime.scavenger import handler as handler_module
from stream_scavenger.runtime.scavenger.config import ScavengerConfig
from stream_scavenger.runtime.scavenger.handler import Scavenger, make_client

pytestmark = pytest.mark.ddb


@pytest.fixture(scope="module")
def sqs_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="module")
def assembly() -> Path:
    return synthesize([sys.executable, str(example_app())])


@pytest.fixture
def given_up(
    assembly: Path, sqs_endpoint: str, ddb_local: Any, ddb: Any, ddb_streams: Any
) -> dict[str, Any]:
    """The example app's tables; 40 messages whose deletes all failed and went to the queue."""
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
        "function": function,
        "names": names,
        "staging": names[staging_id],
        "stream_arn": arns[messages_id],
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


def staging_count(ddb: Any, g: dict[str, Any]) -> int:
    return item_count(ddb, g["staging"])


def depth(g: dict[str, Any]) -> int:
    return queue_depth(g["sqs"], g["queue_url"])


def take_the_message(g: dict[str, Any]) -> dict[str, Any]:
    """Remove the one on-failure message from the queue; return its body."""
    (message,) = g["sqs"].receive_message(QueueUrl=g["queue_url"], VisibilityTimeout=0)["Messages"]
    g["sqs"].delete_message(QueueUrl=g["queue_url"], ReceiptHandle=message["ReceiptHandle"])
    body: dict[str, Any] = json.loads(message["Body"])
    return body


def send(g: dict[str, Any], body: Any) -> str:
    text = body if isinstance(body, str) else json.dumps(body)
    return str(g["sqs"].send_message(QueueUrl=g["queue_url"], MessageBody=text)["MessageId"])


def scavenger_replay(g: dict[str, Any]) -> Any:
    """The scavenger's own handler on the given-up tables, as ``redrive`` replays through it."""
    config = ScavengerConfig.from_env(g["function"].resolved_environment(g["names"]))
    scavenger = Scavenger(
        config, make_client(config, endpoint_url=g["endpoint"], **LOCAL_CLIENT_SETTINGS)
    )
    return lambda event: scavenger.handle(event, None)


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
    code = redrive_cli(given_up, "--dry-run")
    assert staging_count(ddb, given_up) == 40
    assert depth(given_up) == 1
    assert visible(given_up["sqs"], given_up["queue_url"]) == 1, "visible again"
    assert code == 0
    out = capsys.readouterr().out
    assert "messages: 1, records: 40, filtered out: 0, would redrive: 1, kept: 0" in out


def test_redrive_deletes_the_keys_then_the_message(
    given_up: dict[str, Any], ddb: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    code = redrive_cli(given_up)
    assert staging_count(ddb, given_up) == 0
    assert depth(given_up) == 0
    assert code == 0
    assert (
        "messages: 1, records: 40, filtered out: 0, redriven: 1, kept: 0" in capsys.readouterr().out
    )


def test_a_range_the_stream_no_longer_holds_is_reported_and_kept(
    given_up: dict[str, Any], ddb: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    body = take_the_message(given_up)
    info = body["DDBStreamBatchInfo"]
    start = info["startSequenceNumber"]
    info["startSequenceNumber"] = str(int(start) - 1).zfill(len(start))  # not its first: trimmed
    message_id = send(given_up, body)

    code = redrive_cli(given_up)
    assert staging_count(ddb, given_up) == 40
    assert depth(given_up) == 1
    assert visible(given_up["sqs"], given_up["queue_url"]) == 1, "kept messages are visible again"
    assert code == 1
    out = capsys.readouterr().out
    assert f"kept {message_id} (unreadable): no longer in the stream" in out


def test_an_empty_page_inside_the_range_is_not_its_end(
    given_up: dict[str, Any],
    ddb: Any,
    ddb_streams: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Pages of 7 records, and two empty pages after the first: the 33 records after them
    are part of the range too."""
    streams = PagedStreams(ddb_streams, page=7, empty_calls=frozenset({2, 3}))
    wrap_clients(monkeypatch, dynamodbstreams=lambda _: streams)
    monkeypatch.setattr(redrive_module, "EMPTY_PAGE_WAIT_S", 0.0, raising=False)

    code = redrive_cli(given_up)
    assert staging_count(ddb, given_up) == 0
    assert depth(given_up) == 0
    assert code == 0
    assert "records: 40, filtered out: 0, redriven: 1, kept: 0" in capsys.readouterr().out


def test_an_open_shard_that_stays_empty_before_the_ranges_end_keeps_the_message(
    given_up: dict[str, Any],
    ddb: Any,
    ddb_streams: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    streams = PagedStreams(ddb_streams, page=7, records_then=(20, "empty"))
    wrap_clients(monkeypatch, dynamodbstreams=lambda _: streams)
    monkeypatch.setattr(redrive_module, "EMPTY_PAGE_WAIT_S", 0.0, raising=False)

    code = redrive_cli(given_up)
    assert staging_count(ddb, given_up) == 40, "nothing replayed from an incomplete range"
    assert depth(given_up) == 1
    assert streams.calls <= 3 + getattr(redrive_module, "EMPTY_PAGES", 0), "reading is bounded"
    assert code == 1
    out = capsys.readouterr().out
    assert "(unreadable): the range's end" in out and "was not reached" in out


def test_a_shard_closed_before_the_ranges_end_keeps_the_message(
    given_up: dict[str, Any],
    ddb: Any,
    ddb_streams: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A parent shard that closed after 20 of the range's records: the rest are not in a
    child (a range never spans shards), so the message says something is off: keep it."""
    streams = PagedStreams(ddb_streams, page=7, records_then=(20, "closed"))
    wrap_clients(monkeypatch, dynamodbstreams=lambda _: streams)

    code = redrive_cli(given_up)
    assert staging_count(ddb, given_up) == 40
    assert depth(given_up) == 1
    assert code == 1
    assert "(unreadable): the shard is closed" in capsys.readouterr().out


def test_a_range_whose_end_record_is_not_in_the_shard_is_kept(
    given_up: dict[str, Any], ddb: Any, ddb_streams: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """The end names no record of the shard (the records go from one before it to one after
    it): what Lambda gave up on is not what the stream holds, so nothing is replayed."""
    take_the_message(given_up)
    shard_id, records = stream_records(ddb_streams, given_up["stream_arn"])
    before, after = (int(r["dynamodb"]["SequenceNumber"]) for r in records[19:21])
    assert after - before > 1, "DynamoDB Local numbers all tables' writes in one sequence"
    body = on_failure_message(
        records[:20], shard_id, given_up["stream_arn"], "RetryAttemptsExhausted", 11, "fn"
    )
    info = body["DDBStreamBatchInfo"]
    info["endSequenceNumber"] = str(before + 1).zfill(len(info["endSequenceNumber"]))
    message_id = send(given_up, body)

    code = redrive_cli(given_up)
    assert staging_count(ddb, given_up) == 40
    assert depth(given_up) == 1
    assert code == 1
    out = capsys.readouterr().out
    assert f"kept {message_id} (unreadable): its end record" in out


def test_a_range_the_stream_cannot_be_read_at_keeps_that_message_only(
    given_up: dict[str, Any], ddb: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """A start past the shard's records: DynamoDB Local answers InternalFailure."""
    good = take_the_message(given_up)
    bad = json.loads(json.dumps(good))
    bad["DDBStreamBatchInfo"]["startSequenceNumber"] = "9" * 21
    bad["DDBStreamBatchInfo"]["endSequenceNumber"] = "9" * 21
    message_id = send(given_up, bad)
    send(given_up, good)

    code = redrive_cli(given_up)
    assert staging_count(ddb, given_up) == 0
    assert depth(given_up) == 1
    assert code == 1
    out = capsys.readouterr().out
    assert f"kept {message_id} (unreadable): cannot read the range: InternalFailure" in out


MALFORMED = {
    "not JSON": "{not json",
    "no DDBStreamBatchInfo": json.dumps({"requestContext": {}}),
    "DDBStreamBatchInfo is not an object": json.dumps({"DDBStreamBatchInfo": "x"}),
    "endSequenceNumber is missing": None,
    "startSequenceNumber is not a string of digits": "12a",
    "endSequenceNumber is not a string": 7,
    "is after endSequenceNumber": "start>end",
    "streamArn is missing": "no streamArn",
    "shardId is missing": "no shardId",
}


def test_malformed_messages_are_kept_named_and_do_not_stop_the_others(
    given_up: dict[str, Any], ddb: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    good = take_the_message(given_up)
    ids = {}
    for reason, how in MALFORMED.items():
        body = json.loads(json.dumps(good))
        info = body["DDBStreamBatchInfo"]
        if how is None:
            del info["endSequenceNumber"]
        elif how == "12a":
            info["startSequenceNumber"] = "12a"
        elif how == 7:
            info["endSequenceNumber"] = 7
        elif how == "start>end":
            info["startSequenceNumber"], info["endSequenceNumber"] = (
                info["endSequenceNumber"],
                info["startSequenceNumber"],
            )
        elif how == "no streamArn":
            del info["streamArn"]
        elif how == "no shardId":
            info["shardId"] = ""
        else:
            body = how
        ids[reason] = send(given_up, body)
    send(given_up, good)

    code = redrive_cli(given_up)
    assert staging_count(ddb, given_up) == 0, "the good message was redriven"
    assert depth(given_up) == 9
    assert code == 1
    out = capsys.readouterr().out
    assert "messages: 10, records: 40, filtered out: 0, redriven: 1, kept: 9" in out
    for reason, message_id in ids.items():
        (line,) = [line for line in out.splitlines() if message_id in line]
        assert "(not understood)" in line and reason in line, line


def split_in_two(g: dict[str, Any], ddb_streams: Any) -> list[list[dict[str, Any]]]:
    """Replace the one message by two: records 0..19 and 20..39."""
    take_the_message(g)
    shard_id, records = stream_records(ddb_streams, g["stream_arn"])
    halves = [records[:20], records[20:]]
    for half in halves:
        send_range(g["sqs"], g["queue_url"], shard_id, g["stream_arn"], half)
    return halves


def test_a_replay_that_raises_fails_again_and_the_redrive_goes_on(
    given_up: dict[str, Any],
    ddb: Any,
    ddb_streams: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    first, _ = split_in_two(given_up, ddb_streams)
    first_key = first[0]["dynamodb"]["Keys"]
    handle = handler_module.Scavenger.handle

    def handle_or_raise(self: Scavenger, event: Any, context: Any = None) -> Any:
        if event["Records"][0]["dynamodb"]["Keys"] == first_key:
            raise RuntimeError("the handler broke")
        return handle(self, event, context)

    monkeypatch.setattr(handler_module.Scavenger, "handle", handle_or_raise)

    code = redrive_cli(given_up)
    assert staging_count(ddb, given_up) == 20, "the other half was deleted"
    assert depth(given_up) == 1
    assert code == 1
    out = capsys.readouterr().out
    assert "redriven: 1, kept: 1 (failed again: 1)" in out
    assert "(failed again): the replay raised RuntimeError: the handler broke" in out


def test_ctrl_c_leaves_the_message_visible_at_once(
    given_up: dict[str, Any], ddb: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(self: Scavenger, event: Any, context: Any = None) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(handler_module.Scavenger, "handle", interrupted)

    code = redrive_cli(given_up)
    assert staging_count(ddb, given_up) == 40
    assert visible(given_up["sqs"], given_up["queue_url"]) == 1, "not hidden for the hold"
    assert code == 130


def test_a_message_for_another_stream_is_kept(
    given_up: dict[str, Any], ddb: Any, ddb_streams: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """A shared queue: a range of another table's stream, whose records name staging keys.
    Whose filters (and targets) applied to it is unknown: its records must not be replayed."""
    take_the_message(given_up)
    (stack,) = load_assembly(given_up["assembly"])
    messages_def = next(t for lid, t in stack.tables.items() if lid.startswith("Messages"))
    other = f"{given_up['staging']}-other"
    other_arn = create_table(ddb, other, messages_def)
    for key in given_up["keys"][:5]:
        ddb.put_item(TableName=other, Item=key)
    shard_id, records = stream_records(ddb_streams, other_arn)
    message_id = send_range(given_up["sqs"], given_up["queue_url"], shard_id, other_arn, records)

    code = redrive_cli(given_up)
    assert staging_count(ddb, given_up) == 40, "no record of the other stream was replayed"
    assert depth(given_up) == 1
    assert code == 1
    out = capsys.readouterr().out
    assert f"kept {message_id} (filters unknown): no event source mapping" in out
    assert other_arn in out


def test_short_pollings_empty_answer_does_not_end_the_redrive(
    given_up: dict[str, Any],
    ddb: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    wrap_clients(monkeypatch, sqs=lambda real: SqsAnswers(real, short_poll_empty=True))

    code = redrive_cli(given_up)
    assert staging_count(ddb, given_up) == 0
    assert depth(given_up) == 0
    assert code == 0
    assert "messages: 1, records: 40" in capsys.readouterr().out


def test_a_duplicate_delivery_does_not_end_the_redrive(
    given_up: dict[str, Any],
    ddb: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """SQS delivers at least once: the second receive answers the first message again; the
    eleven messages behind it are still read."""
    for i in range(11):
        send(given_up, f"not an on-failure message {i}")
    wrap_clients(monkeypatch, sqs=lambda real: SqsAnswers(real, duplicate_on=2))

    code = redrive_cli(given_up)
    assert staging_count(ddb, given_up) == 0
    assert depth(given_up) == 11
    assert code == 1
    out = capsys.readouterr().out
    assert "messages: 12, records: 40, filtered out: 0, redriven: 1, kept: 11" in out


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_replay_longer_than_the_visibility_timeout_keeps_the_message(
    given_up: dict[str, Any], ddb: Any, ddb_streams: Any
) -> None:
    """The message may be another receiver's by then: deleting it with a stale receipt handle
    can silently leave it (or race a second replay), so it is kept and said so."""
    clock, replay = Clock(), scavenger_replay(given_up)

    def slow_replay(event: Any) -> Any:
        clock.now += 300  # the replay took the whole visibility timeout
        return replay(event)

    mappings = redrive_module.assembly_mappings(given_up["function"], given_up["names"], ddb)
    report = redrive_module.redrive(
        given_up["sqs"],
        given_up["queue_url"],
        ddb_streams,
        slow_replay,
        mappings,
        hold_s=300,
        clock=clock,
    )
    (result,) = report.results
    assert (
        result.outcome is redrive_module.Outcome.NOT_DELETED
        and "visibility timeout" in result.reason
    )
    assert not report.ok
    assert staging_count(ddb, given_up) == 0, "the records themselves succeeded"
    assert depth(given_up) == 1


def test_stopping_at_max_messages_is_not_success(
    given_up: dict[str, Any], ddb: Any, ddb_streams: Any
) -> None:
    send(given_up, "not an on-failure message")
    mappings = redrive_module.assembly_mappings(given_up["function"], given_up["names"], ddb)
    report = redrive_module.redrive(
        given_up["sqs"],
        given_up["queue_url"],
        ddb_streams,
        scavenger_replay(given_up),
        mappings,
        max_messages=1,
    )
    assert len(report.results) == 1 and not report.ok
    assert report.stopped == "after 1 messages; the queue may hold more"
    assert depth(given_up) >= 1
