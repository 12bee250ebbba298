"""The local event source mapping against DynamoDB Local's stream, with scripted handlers."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from stream_scavenger.local.invoker import FunctionError
from stream_scavenger.local.runner import (
    Checkpoints,
    FileDestination,
    LocalEventSourceMapping,
)

pytestmark = pytest.mark.ddb
PROPS = {
    "BatchSize": 10,
    "StartingPosition": "TRIM_HORIZON",
    "MaximumRetryAttempts": 2,
    "MaximumRecordAgeInSeconds": 3600,
    "BisectBatchOnFunctionError": True,
    "FunctionResponseTypes": ["ReportBatchItemFailures"],
}


@pytest.fixture
def stream(ddb: Any, make_table: Any) -> tuple[str, list[str]]:
    """A KEYS_ONLY stream with 25 INSERT records; returns its ARN and the keys in order."""
    table = make_table({"pk": "S"}, stream="KEYS_ONLY")
    keys = [f"k{i:02d}" for i in range(25)]
    for key in keys:
        ddb.put_item(TableName=table, Item={"pk": {"S": key}})
    arn = ddb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    return arn, keys


class Script:
    """A handler that records each batch's keys and answers with ``decide(keys)``."""

    def __init__(self, decide: Callable[[list[str]], Any]) -> None:
        self.batches: list[list[str]] = []
        self.decide = decide

    def __call__(self, event: Any) -> Any:
        records = event["Records"]
        keys = [r["dynamodb"]["Keys"]["pk"]["S"] for r in records]
        self.batches.append(keys)
        answer = self.decide(keys)
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, str):  # report from this key on
            index = keys.index(answer)
            return {
                "batchItemFailures": [
                    {"itemIdentifier": records[index]["dynamodb"]["SequenceNumber"]}
                ]
            }
        return {"batchItemFailures": []}


def mapping(ddb_streams: Any, arn: str, handler: Any, **kw: Any) -> LocalEventSourceMapping:
    props = {**PROPS, **kw.pop("props", {})}
    return LocalEventSourceMapping(ddb_streams, arn, handler, props, **kw)


def test_batches_are_lambda_shaped_and_sized(
    ddb_streams: Any, stream: tuple[str, list[str]]
) -> None:
    arn, keys = stream
    seen: list[dict[str, Any]] = []
    handler = Script(lambda keys: None)
    run = mapping(ddb_streams, arn, lambda e: (seen.append(e), handler(e))[1]).run()
    assert handler.batches == [keys[0:10], keys[10:20], keys[20:25]]
    record = seen[0]["Records"][0]
    assert record["eventName"] == "INSERT" and record["eventSource"] == "aws:dynamodb"
    assert record["eventSourceARN"] == arn and record["awsRegion"] == "us-east-1"
    assert isinstance(record["dynamodb"]["ApproximateCreationDateTime"], int)
    assert record["dynamodb"]["StreamViewType"] == "KEYS_ONLY"
    json.dumps(seen)  # exactly JSON types, as Lambda delivers
    assert (run.invocations, run.records_read) == (3, 25)


def test_partial_failure_resumes_at_the_lowest_reported_record(
    ddb_streams: Any, stream: tuple[str, list[str]]
) -> None:
    arn, keys = stream
    failed_once: set[str] = set()

    def decide(batch: list[str]) -> Any:
        if "k04" in batch and "k04" not in failed_once:
            failed_once.add("k04")
            return "k04"
        return None

    handler = Script(decide)
    run = mapping(ddb_streams, arn, handler).run()
    assert handler.batches[:2] == [keys[0:10], keys[4:10]]
    assert run.partial_failures == 1 and run.given_up == []


def test_retries_exhausted_go_to_the_on_failure_destination(
    ddb_streams: Any, stream: tuple[str, list[str]], tmp_path: Path
) -> None:
    arn, keys = stream
    handler = Script(lambda batch: "k13" if "k13" in batch else None)
    destination = FileDestination(tmp_path / "failures.jsonl")
    run = mapping(ddb_streams, arn, handler, on_failure=destination).run()

    assert handler.batches[1:4] == [keys[10:20], keys[13:20], keys[13:20]]  # first try + 2 retries
    (message,) = [json.loads(line) for line in destination.path.read_text().splitlines()]
    info = message["DDBStreamBatchInfo"]
    assert message["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert message["requestContext"]["approximateInvokeCount"] == 3
    assert (info["batchSize"], info["streamArn"]) == (7, arn)
    assert info["shardId"].startswith("shardId-")
    assert int(info["startSequenceNumber"]) < int(info["endSequenceNumber"])
    assert run.records_given_up == 7 and handler.batches[-1] == keys[20:25]


def test_function_errors_bisect_down_to_the_poison_record(
    ddb_streams: Any, stream: tuple[str, list[str]]
) -> None:
    arn, keys = stream
    handler = Script(lambda batch: RuntimeError("boom") if "k06" in batch else None)
    run = mapping(ddb_streams, arn, handler, props={"MaximumRetryAttempts": 10}).run()

    (message,) = run.given_up
    assert message["DDBStreamBatchInfo"]["batchSize"] == 1
    delivered = {k for batch in handler.batches if "k06" not in batch for k in batch}
    assert delivered == set(keys) - {"k06"}
    assert run.bisections >= 3 and run.function_errors >= 4


def test_without_bisect_a_failing_batch_is_given_up_whole(
    ddb_streams: Any, stream: tuple[str, list[str]]
) -> None:
    arn, _ = stream
    handler = Script(lambda batch: FunctionError("Unhandled", "boom") if "k06" in batch else None)
    run = mapping(ddb_streams, arn, handler, props={"BisectBatchOnFunctionError": False}).run()
    (message,) = run.given_up
    assert message["DDBStreamBatchInfo"]["batchSize"] == 10
    assert run.function_errors == 3 and run.bisections == 0


def test_records_older_than_the_maximum_age_are_not_delivered(
    ddb_streams: Any, stream: tuple[str, list[str]]
) -> None:
    arn, _ = stream
    handler = Script(lambda batch: None)
    later = time.time() + 2 * 3600
    run = mapping(ddb_streams, arn, handler, clock=lambda: later).run()
    assert handler.batches == []
    assert {m["requestContext"]["condition"] for m in run.given_up} == {"RecordAgeExceeded"}
    assert run.records_given_up == 25


def test_without_report_batch_item_failures_the_response_is_ignored(
    ddb_streams: Any, stream: tuple[str, list[str]]
) -> None:
    arn, _ = stream
    handler = Script(lambda batch: batch[0])
    run = mapping(ddb_streams, arn, handler, props={"FunctionResponseTypes": []}).run()
    assert run.invocations == 3 and run.partial_failures == 0


def test_an_interrupted_run_resumes_after_the_last_finished_batch(
    ddb_streams: Any, stream: tuple[str, list[str]], tmp_path: Path
) -> None:
    arn, keys = stream
    path = tmp_path / "checkpoints.json"

    def interrupt_on_third(batch: list[str]) -> Any:
        if batch[0] == "k20":
            raise KeyboardInterrupt
        return None

    first = Script(interrupt_on_third)
    with pytest.raises(KeyboardInterrupt):
        mapping(ddb_streams, arn, first, checkpoints=Checkpoints.load(path, arn)).run()
    second = Script(lambda batch: None)
    mapping(ddb_streams, arn, second, checkpoints=Checkpoints.load(path, arn)).run()

    assert first.batches[:2] == [keys[0:10], keys[10:20]]
    assert second.batches == [keys[20:25]]


def test_a_partial_batch_waits_for_the_batching_window(
    ddb: Any, ddb_streams: Any, make_table: Any
) -> None:
    table = make_table({"pk": "S"}, stream="KEYS_ONLY")
    arn = ddb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    for i in range(5):
        ddb.put_item(TableName=table, Item={"pk": {"S": f"early{i}"}})

    def late_writes() -> None:
        time.sleep(0.8)
        for i in range(3):
            ddb.put_item(TableName=table, Item={"pk": {"S": f"late{i}"}})

    import threading

    writer = threading.Thread(target=late_writes)
    writer.start()
    handler = Script(lambda batch: None)
    run = mapping(ddb_streams, arn, handler, props={"MaximumBatchingWindowInSeconds": 4}).run()
    writer.join()

    assert handler.batches == [[f"early{i}" for i in range(5)] + [f"late{i}" for i in range(3)]]
    assert run.invocations == 1


def test_without_a_window_a_drained_stream_is_delivered_at_once(
    ddb_streams: Any, stream: tuple[str, list[str]]
) -> None:
    arn, keys = stream
    handler = Script(lambda batch: None)
    mapping(ddb_streams, arn, handler, props={"BatchSize": 100}).run()
    assert handler.batches == [keys]
