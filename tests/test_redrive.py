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
from pathlib import Path
from typing import Any

import pytest
from redrivekit import (
    PagedStreams,
    SqsAnswers,
    give_up_on_everything,
    item_count,
    queue_depth,
    redrive_cli,
    send_range,
    stream_records,
    visible,
    wrap_clients,
)
from shardedstreams import Shard, ShardedStreams
from sqsserver import sqs_endpoint_fixture  # noqa: F401 - the sqs_endpoint fixture

from stream_scavenger import redrive as redrive_module
from stream_scavenger.local.assembly import load_assembly
from stream_scavenger.local.dynamodb_local import LOCAL_CLIENT_SETTINGS
from stream_scavenger.local.event_source_mapping import create_table, on_failure_message
from stream_scavenger.local.scenario import example_app, synthesize
from stream_scavenger.runtime.scavenger import handler as handler_module
from stream_scavenger.runtime.scavenger.config import ScavengerConfig
from stream_scavenger.runtime.scavenger.handler import Scavenger, make_client

pytestmark = pytest.mark.ddb


@pytest.fixture(scope="module")
def assembly() -> Path:
    return synthesize([sys.executable, str(example_app())])


KEYS = [{"messageId": {"S": f"m{i}"}, "createdAt": {"N": str(i)}} for i in range(40)]


@pytest.fixture
def given_up(
    assembly: Path, sqs_endpoint: str, ddb_local: Any, ddb: Any, ddb_streams: Any
) -> dict[str, Any]:
    """The example app's tables; 40 messages whose deletes all failed and went to the queue."""

    def fill(ddb: Any, messages: str, staging: str) -> None:
        for key in KEYS:
            ddb.put_item(TableName=staging, Item=key)
            ddb.put_item(TableName=messages, Item=key)

    g = give_up_on_everything(
        assembly, (ddb, ddb_streams), sqs_endpoint, ddb_local.endpoint_url, fill
    )
    assert g["run"].records_given_up == 40 and len(g["run"].given_up) == 1  # one batch
    return {**g, "keys": KEYS}


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
    monkeypatch.setattr(redrive_module, "EMPTY_PAGE_WAIT_S", 0.0)

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
    monkeypatch.setattr(redrive_module, "EMPTY_PAGE_WAIT_S", 0.0)

    code = redrive_cli(given_up)
    assert staging_count(ddb, given_up) == 40, "nothing replayed from an incomplete range"
    assert depth(given_up) == 1
    assert streams.calls <= 3 + redrive_module.EMPTY_PAGES, "reading is bounded"
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
        records[:20],
        shard_id,
        given_up["stream_arn"],
        "RetryAttemptsExhausted",
        11,
        given_up["function_arn"],
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
        send_range(g["sqs"], g["queue_url"], shard_id, g["stream_arn"], half, g["function_arn"])
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
    message_id = send_range(
        given_up["sqs"],
        given_up["queue_url"],
        shard_id,
        other_arn,
        records,
        given_up["function_arn"],
    )

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


# ---- whose message: with a cloud assembly, the function's name must say it is this one -------


def from_function(g: dict[str, Any], function_arn: str) -> str:
    """Replace the one message by the same range, given up on by ``function_arn``."""
    body = take_the_message(g)
    body["requestContext"]["functionArn"] = function_arn
    return send(g, body)


OTHER_FUNCTION = (
    "arn:aws:lambda:us-east-1:123456789012:function:"
    "StreamScavengerExample-OtherScavengerFunction9D3A2B1C-XyZ987"
)


def test_a_message_of_another_function_on_the_same_stream_is_kept(
    given_up: dict[str, Any], ddb: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two functions read the stream and share the queue: the other one's range would be
    replayed through this one's targets. Its name does not hold this function's logical ID."""
    message_id = from_function(given_up, OTHER_FUNCTION)

    code = redrive_cli(given_up)
    assert staging_count(ddb, given_up) == 40
    assert depth(given_up) == 1
    assert code == 1
    out = capsys.readouterr().out
    assert f"kept {message_id} (filters unknown): the message is from function" in out
    assert given_up["function"].logical_id in out and "--function-arn" in out


def test_a_message_naming_no_function_is_kept(
    given_up: dict[str, Any], ddb: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    body = take_the_message(given_up)
    del body["requestContext"]["functionArn"]
    message_id = send(given_up, body)

    assert redrive_cli(given_up) == 1
    assert staging_count(ddb, given_up) == 40 and depth(given_up) == 1
    assert f"kept {message_id} (filters unknown): the message names no function" in (
        capsys.readouterr().out
    )


def test_with_function_arn_only_that_functions_messages_are_redriven(
    given_up: dict[str, Any], ddb: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """A name CloudFormation did not make (chosen, or shortened): --function-arn names it, and
    then a message whose name does hold the logical ID is not enough."""
    chosen = "arn:aws:lambda:us-east-1:123456789012:function:my-scavenger"
    from_function(given_up, chosen)
    assert redrive_cli(given_up, "--function-arn", OTHER_FUNCTION) == 1
    assert staging_count(ddb, given_up) == 40 and depth(given_up) == 1
    assert "(filters unknown): the message is from function" in capsys.readouterr().out

    assert redrive_cli(given_up, "--function-arn", f"{chosen}:live") == 0
    assert staging_count(ddb, given_up) == 0 and depth(given_up) == 0


def test_function_arn_goes_with_a_cloud_assembly(
    given_up: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    code = redrive_cli(
        given_up, "--function-arn", OTHER_FUNCTION, config=["--function-name", "scavenger"]
    )
    assert code == 2
    assert "--function-arn works with --cloud-assembly" in capsys.readouterr().err
    assert depth(given_up) == 1


# ---- the range is read by the local mapping's rule: closed shards to their end ---------------


def presented(
    ddb: Any, ddb_streams: Any, make_table: Any, *, closed: bool, gap: int
) -> tuple[ShardedStreams, Shard, redrive_module.BatchRange]:
    """One shard of 10 records (k00..k09), ``gap`` empty pages served before k05, and the
    range of all 10 as an on-failure message names it."""
    table = make_table({"pk": "S"}, stream="KEYS_ONLY")
    for i in range(10):
        ddb.put_item(TableName=table, Item={"pk": {"S": f"k{i:02d}"}})
    arn = ddb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    shard = Shard("shard-x", arn, closed=closed, gaps={5: gap})
    streams = ShardedStreams(ddb_streams, "arn:presented", [shard], records_per_page=5)
    numbers = streams.sequence_numbers(shard)
    batch = redrive_module.BatchRange("arn:presented", "shard-x", numbers[0], numbers[-1], 10)
    return streams, shard, batch


def keys_of(records: list[dict[str, Any]]) -> list[str]:
    return [r["dynamodb"]["Keys"]["pk"]["S"] for r in records]


def test_a_closed_shard_is_read_past_any_run_of_empty_pages(
    ddb: Any, ddb_streams: Any, make_table: Any
) -> None:
    streams, _, batch = presented(ddb, ddb_streams, make_table, closed=True, gap=25)
    records = redrive_module.read_range(streams, batch, sleep=lambda s: None)
    assert keys_of(records) == [f"k{i:02d}" for i in range(10)]
    assert streams.empty_pages_served == 25


def test_an_open_shard_that_closes_while_read_is_read_to_the_ranges_end(
    ddb: Any, ddb_streams: Any, make_table: Any
) -> None:
    """After 20 empty pages the shard is described again: closed by then, it is read on."""
    streams, shard, batch = presented(ddb, ddb_streams, make_table, closed=False, gap=25)

    def close_on_the_second_look(call: int) -> None:
        shard.closed = shard.closed or call == 2

    streams.on_describe = close_on_the_second_look
    records = redrive_module.read_range(streams, batch, sleep=lambda s: None)
    assert keys_of(records) == [f"k{i:02d}" for i in range(10)]


def test_an_open_shard_is_given_up_on_after_20_empty_pages_and_says_it_is_open(
    ddb: Any, ddb_streams: Any, make_table: Any
) -> None:
    streams, _, batch = presented(ddb, ddb_streams, make_table, closed=False, gap=25)
    slept: list[float] = []
    with pytest.raises(redrive_module.Kept) as kept:
        redrive_module.read_range(streams, batch, sleep=slept.append)
    assert kept.value.outcome is redrive_module.Outcome.UNREADABLE
    assert "20 empty pages in a row" in kept.value.reason
    assert "still open (DescribeStream lists no EndingSequenceNumber" in kept.value.reason
    assert slept == [redrive_module.EMPTY_PAGE_WAIT_S] * 19
