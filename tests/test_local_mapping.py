"""The local event source mapping against DynamoDB Local's stream, with scripted handlers."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from shardedstreams import Shard, ShardedStreams

from stream_scavenger.local.event_source_mapping import (
    Checkpoints,
    FileDestination,
    LocalEventSourceMapping,
)
from stream_scavenger.local.invoker import FunctionError

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


# ---- shards: every page, parents before children, every page of records ---------------------


def filled_stream(ddb: Any, make_table: Any, prefix: str, count: int) -> str:
    """A table of its own (one DynamoDB Local shard) with ``count`` INSERTs; its stream ARN."""
    table = make_table({"pk": "S"}, stream="KEYS_ONLY")
    for i in range(count):
        ddb.put_item(TableName=table, Item={"pk": {"S": f"{prefix}{i:02d}"}})
    return str(ddb.describe_table(TableName=table)["Table"]["LatestStreamArn"])


def one_shard(ddb_streams: Any, arn: str, **options: Any) -> tuple[ShardedStreams, str]:
    """The stream as it is (its one shard, open), with the wrapper's pages and gaps."""
    streams = ShardedStreams.as_it_is(ddb_streams, arn, **options)
    return streams, streams.shards[0].shard_id


def test_every_page_of_shards_is_read(ddb: Any, ddb_streams: Any, make_table: Any) -> None:
    shards = [Shard(f"shard-{n}", filled_stream(ddb, make_table, f"s{n}-", 3)) for n in range(5)]
    streams = ShardedStreams(ddb_streams, "arn:presented", shards, shards_per_page=2)
    handler = Script(lambda batch: None)
    run = mapping(streams, "arn:presented", handler).run()
    assert sorted(k for batch in handler.batches for k in batch) == sorted(
        f"s{n}-{i:02d}" for n in range(5) for i in range(3)
    )
    assert run.records_read == 15 and streams.describe_calls >= 3


def test_a_child_shard_is_read_after_its_parent(
    ddb: Any, ddb_streams: Any, make_table: Any
) -> None:
    """Listed children first, over several pages: still parent, child, grandchild, and a
    shard's last partial batch never mixes with the next shard's records."""
    parent = Shard("shard-a", filled_stream(ddb, make_table, "p", 12), closed=True)
    child = Shard("shard-b", filled_stream(ddb, make_table, "c", 12), "shard-a", closed=True)
    grandchild = Shard("shard-c", filled_stream(ddb, make_table, "g", 3), "shard-b")
    streams = ShardedStreams(
        ddb_streams, "arn:presented", [grandchild, child, parent], shards_per_page=1
    )
    handler = Script(lambda batch: None)
    mapping(streams, "arn:presented", handler).run()
    p, c, g = ([f"{x}{i:02d}" for i in range(n)] for x, n in (("p", 12), ("c", 12), ("g", 3)))
    assert handler.batches == [p[:10], p[10:], c[:10], c[10:], g]


def test_a_shard_that_closed_during_the_run_is_finished_before_its_child(
    ddb: Any, ddb_streams: Any, make_table: Any
) -> None:
    """Drained while open, then written to and closed, with a child: the parent's late
    records come first, then the child's."""
    parent_table = make_table({"pk": "S"}, stream="KEYS_ONLY")
    for i in range(3):
        ddb.put_item(TableName=parent_table, Item={"pk": {"S": f"p{i:02d}"}})
    parent_arn = ddb.describe_table(TableName=parent_table)["Table"]["LatestStreamArn"]
    parent = Shard("shard-a", parent_arn)
    streams = ShardedStreams(ddb_streams, "arn:presented", [parent])
    child_arn = filled_stream(ddb, make_table, "c", 2)

    def split_after_the_first_listing(call: int) -> None:
        if call == 2:
            for i in range(3, 5):
                ddb.put_item(TableName=parent_table, Item={"pk": {"S": f"p{i:02d}"}})
            parent.closed = True
            streams.add(Shard("shard-b", child_arn, "shard-a"))

    streams.on_describe = split_after_the_first_listing
    handler = Script(lambda batch: None)
    mapping(streams, "arn:presented", handler).run()
    assert handler.batches == [["p00", "p01", "p02"], ["p03", "p04"], ["c00", "c01"]]


def test_at_latest_a_child_of_a_shard_being_read_is_read_from_its_start(
    ddb: Any, ddb_streams: Any, make_table: Any
) -> None:
    """StartingPosition is where a new mapping starts; a child of a shard it was reading
    holds the records after the parent's, from the child's first one."""
    parent = Shard("shard-a", filled_stream(ddb, make_table, "p", 10), closed=True)
    child = Shard("shard-b", filled_stream(ddb, make_table, "c", 4), "shard-a")
    streams = ShardedStreams(ddb_streams, "arn:presented", [parent, child])
    reading = Checkpoints(shards={"shard-a": streams.sequence_numbers(parent)[5]})
    handler = Script(lambda batch: None)
    props = {"StartingPosition": "LATEST"}
    mapping(streams, "arn:presented", handler, props=props, checkpoints=reading).run()
    assert handler.batches == [["p06", "p07", "p08", "p09"], ["c00", "c01", "c02", "c03"]]


def test_an_empty_page_is_not_the_end_of_an_open_shard(
    ddb_streams: Any, stream: tuple[str, list[str]]
) -> None:
    arn, keys = stream
    streams, _ = one_shard(ddb_streams, arn, records_per_page=5, gaps={10: 4, 20: 1})
    handler = Script(lambda batch: None)
    run = mapping(streams, arn, handler).run()
    assert [k for batch in handler.batches for k in batch] == keys
    assert run.records_read == 25 and streams.empty_pages_served == 5


def test_an_open_shard_is_drained_after_five_consecutive_empty_pages(
    ddb_streams: Any, stream: tuple[str, list[str]]
) -> None:
    """The rule, with the sleep injected: five empty pages in a row, 0.1 s apart, end an open
    shard; a fresh read after the checkpoint then names what was left, and a rerun takes it."""
    arn, keys = stream
    streams, shard_id = one_shard(ddb_streams, arn, records_per_page=5, gaps={10: 5})
    slept: list[float] = []
    local = mapping(streams, arn, Script(lambda batch: None), sleep=slept.append)
    first = local.run()
    assert (first.records_read, slept) == (10, [0.1] * 4)
    assert local.undelivered() == {shard_id: 15}
    again = Script(lambda batch: None)
    rerun = mapping(streams, arn, again, checkpoints=local.checkpoints, sleep=slept.append)
    rerun.run()
    assert again.batches == [keys[10:20], keys[20:25]] and rerun.undelivered() == {}


def test_a_closed_shard_is_read_past_any_run_of_empty_pages(
    ddb: Any, ddb_streams: Any, make_table: Any
) -> None:
    shard = Shard("shard-x", filled_stream(ddb, make_table, "k", 25), closed=True, gaps={5: 12})
    streams = ShardedStreams(ddb_streams, "arn:presented", [shard], records_per_page=5)
    handler = Script(lambda batch: None)
    run = mapping(streams, "arn:presented", handler).run()
    assert [k for batch in handler.batches for k in batch] == [f"k{i:02d}" for i in range(25)]
    assert run.records_read == 25


def test_the_batching_window_reads_on_past_a_full_batch(
    ddb_streams: Any, stream: tuple[str, list[str]]
) -> None:
    """Waiting out the window, a batch fills up: the records after it are read too."""
    arn, keys = stream
    streams, _ = one_shard(ddb_streams, arn, records_per_page=5, gaps={5: 1})
    handler = Script(lambda batch: None)
    run = mapping(streams, arn, handler, props={"MaximumBatchingWindowInSeconds": 1}).run()
    assert handler.batches == [keys[0:10], keys[10:20], keys[20:25]]
    assert run.records_read == 25


def test_records_filtered_out_after_the_last_batch_are_checkpointed(
    ddb_streams: Any, stream: tuple[str, list[str]], tmp_path: Path
) -> None:
    arn, keys = stream
    path = tmp_path / "checkpoints.json"
    selects_first_five = {
        "FilterCriteria": {
            "Filters": [{"Pattern": json.dumps({"dynamodb": {"Keys": {"pk": {"S": keys[:5]}}}})}]
        }
    }
    first = Script(lambda batch: None)
    mapping(
        ddb_streams, arn, first, props=selects_first_five, checkpoints=Checkpoints.load(path, arn)
    ).run()
    again = mapping(
        ddb_streams,
        arn,
        Script(lambda batch: None),
        props=selects_first_five,
        checkpoints=Checkpoints.load(path, arn),
    ).run()
    assert first.batches == [keys[:5]]
    assert again.records_read == 0  # the 20 filtered-out records are not read again


def test_an_interrupted_bisection_leaves_the_checkpoint_before_the_batch(
    ddb_streams: Any, stream: tuple[str, list[str]], tmp_path: Path
) -> None:
    """Ctrl-C in the second half of a split batch: the first half's success claims nothing."""
    arn, keys = stream
    path = tmp_path / "checkpoints.json"

    def decide(batch: list[str]) -> Any:
        if "k13" in batch and len(batch) == 10:
            return RuntimeError("boom")
        if batch[0] == "k15":
            raise KeyboardInterrupt
        return None

    first = Script(decide)
    with pytest.raises(KeyboardInterrupt):
        mapping(ddb_streams, arn, first, checkpoints=Checkpoints.load(path, arn)).run()
    second = Script(lambda batch: None)
    mapping(ddb_streams, arn, second, checkpoints=Checkpoints.load(path, arn)).run()
    assert first.batches == [keys[0:10], keys[10:20], keys[10:15], keys[15:20]]
    assert second.batches == [keys[10:20], keys[20:25]]


def test_a_checkpoint_torn_while_being_saved_leaves_the_last_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C in the middle of writing: the file still holds the last whole checkpoint
    (also when its name ends in .tmp, the suffix of the temporary file)."""
    path = tmp_path / "state.tmp"
    checkpoints = Checkpoints.load(path, "arn:stream")
    checkpoints.done("shard-1", "100")
    write_text = Path.write_text

    def torn(self: Path, data: str, *args: Any, **kwargs: Any) -> int:
        write_text(self, data[: len(data) // 2])
        raise KeyboardInterrupt

    monkeypatch.setattr(Path, "write_text", torn)
    with pytest.raises(KeyboardInterrupt):
        checkpoints.done("shard-1", "200")
    monkeypatch.undo()
    assert Checkpoints.load(path, "arn:stream").shards == {"shard-1": "100"}


def test_a_filter_without_a_pattern_string_is_refused_not_dropped() -> None:
    """Dropping an unreadable filter would select more than the mapping does."""
    from stream_scavenger.local.event_source_mapping import MappingFilters

    good = {"Pattern": json.dumps({"eventName": ["INSERT"]})}
    with pytest.raises(ValueError, match="no Pattern string"):
        MappingFilters.of({"FilterCriteria": {"Filters": [good, {"Pattern": {"Fn::Join": []}}]}})
    only = MappingFilters.of({"FilterCriteria": {"Filters": [good]}})
    assert only.selects({"eventName": "INSERT"}) and not only.selects({"eventName": "REMOVE"})


# ---- what a run leaves for the next one ------------------------------------------------------


def test_at_latest_the_child_of_a_shard_drained_empty_is_read_from_its_start(
    ddb: Any, ddb_streams: Any, make_table: Any
) -> None:
    """The parent had no record while the mapping read it (so no checkpoint): its child,
    appearing when it closes, still holds the records after the parent's."""
    parent_table = make_table({"pk": "S"}, stream="KEYS_ONLY")  # stays empty
    parent_arn = ddb.describe_table(TableName=parent_table)["Table"]["LatestStreamArn"]
    child_table = make_table({"pk": "S"}, stream="KEYS_ONLY")
    child_arn = ddb.describe_table(TableName=child_table)["Table"]["LatestStreamArn"]
    parent = Shard("shard-a", parent_arn)
    streams = ShardedStreams(ddb_streams, "arn:presented", [parent])

    def split_after_the_first_listing(call: int) -> None:
        if call == 2:
            parent.closed = True
            for i in range(3):
                ddb.put_item(TableName=child_table, Item={"pk": {"S": f"c{i:02d}"}})
            streams.add(Shard("shard-b", child_arn, "shard-a"))

    streams.on_describe = split_after_the_first_listing
    handler = Script(lambda batch: None)
    local = mapping(
        streams, "arn:presented", handler, props={"StartingPosition": "LATEST"},
        sleep=lambda s: None,
    )  # fmt: skip
    local.run()
    assert handler.batches == [["c00", "c01", "c02"]]
    assert local.undelivered() == {}


def test_a_later_run_sees_the_child_of_a_shard_read_empty_at_latest(
    ddb: Any, ddb_streams: Any, make_table: Any, tmp_path: Path
) -> None:
    """The checkpoint file remembers the shards read while open: the next run (and its
    ``undelivered()``) reads their children from the first record."""
    parent_table = make_table({"pk": "S"}, stream="KEYS_ONLY")
    parent = Shard(
        "shard-a", ddb.describe_table(TableName=parent_table)["Table"]["LatestStreamArn"]
    )
    streams = ShardedStreams(ddb_streams, "arn:presented", [parent])
    path, latest = tmp_path / "checkpoints.json", {"StartingPosition": "LATEST"}
    first = mapping(
        streams, "arn:presented", Script(lambda batch: None), props=latest,
        checkpoints=Checkpoints.load(path, "arn:presented"), sleep=lambda s: None,
    )  # fmt: skip
    assert first.run().records_read == 0

    parent.closed = True
    streams.add(Shard("shard-b", filled_stream(ddb, make_table, "c", 3), "shard-a"))
    handler = Script(lambda batch: None)
    second = mapping(
        streams, "arn:presented", handler, props=latest,
        checkpoints=Checkpoints.load(path, "arn:presented"), sleep=lambda s: None,
    )  # fmt: skip
    assert second.undelivered() == {"shard-b": 3}
    second.run()
    assert handler.batches == [["c00", "c01", "c02"]] and second.undelivered() == {}


def test_without_a_destination_that_keeps_them_the_checkpoint_stays_before_records_given_up(
    ddb_streams: Any, stream: tuple[str, list[str]], tmp_path: Path
) -> None:
    """Messages kept in memory only: the run goes on, but the saved checkpoint stays before
    the batch given up on, so the next run delivers it (and what came after it) again."""
    arn, keys = stream
    path = tmp_path / "checkpoints.json"
    failing = Script(lambda batch: "k13" if "k13" in batch else None)
    run = mapping(ddb_streams, arn, failing, checkpoints=Checkpoints.load(path, arn)).run()
    assert run.records_given_up == 7 and failing.batches[-1] == keys[20:25]

    again = Script(lambda batch: None)
    rerun = mapping(ddb_streams, arn, again, checkpoints=Checkpoints.load(path, arn))
    (shard_id,) = rerun.checkpoints.shards
    assert rerun.undelivered() == {shard_id: 15}  # k10..k24, after the first batch
    rerun.run()
    assert again.batches == [keys[10:20], keys[20:25]] and rerun.undelivered() == {}
    assert run.held == {shard_id: failing_first_batch_end(ddb_streams, arn, shard_id)}


def failing_first_batch_end(ddb_streams: Any, arn: str, shard_id: str) -> str:
    """The sequence number of the stream's 10th record (k09), where the first batch ends."""
    iterator = ddb_streams.get_shard_iterator(
        StreamArn=arn, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    records = ddb_streams.get_records(ShardIterator=iterator, Limit=10)["Records"]
    return str(records[9]["dynamodb"]["SequenceNumber"])


def test_a_destination_that_keeps_them_lets_the_checkpoint_move_on(
    ddb_streams: Any, stream: tuple[str, list[str]], tmp_path: Path
) -> None:
    arn, _ = stream
    path = tmp_path / "checkpoints.json"
    destination = FileDestination(tmp_path / "failures.jsonl")
    failing = Script(lambda batch: "k13" if "k13" in batch else None)
    run = mapping(
        ddb_streams, arn, failing, on_failure=destination,
        checkpoints=Checkpoints.load(path, arn),
    ).run()  # fmt: skip
    assert run.records_given_up == 7
    rerun = mapping(
        ddb_streams, arn, Script(lambda batch: None), checkpoints=Checkpoints.load(path, arn)
    )
    assert rerun.undelivered() == {}
    assert run.held == {}


def test_an_open_shard_found_closed_at_the_empty_page_bound_is_read_to_its_end(
    ddb: Any, ddb_streams: Any, make_table: Any
) -> None:
    """The shard is described again before an open one counts as drained: closed by then,
    it is read to its end (past the empty pages) in the same pass."""
    shard = Shard("shard-x", filled_stream(ddb, make_table, "k", 10), gaps={5: 5})
    streams = ShardedStreams(ddb_streams, "arn:presented", [shard], records_per_page=5)

    def close_on_the_second_look(call: int) -> None:
        if call == 2:
            shard.closed = True

    streams.on_describe = close_on_the_second_look
    handler = Script(lambda batch: None)
    run = mapping(streams, "arn:presented", handler, sleep=lambda s: None).run()
    assert [k for batch in handler.batches for k in batch] == [f"k{i:02d}" for i in range(10)]
    assert run.records_read == 10


def test_at_latest_a_later_run_delivers_what_came_after_the_first_one_opened_the_shard(
    ddb: Any, ddb_streams: Any, make_table: Any, tmp_path: Path
) -> None:
    """LATEST has no sequence number to resume at: a shard opened at LATEST with no record
    yet has no checkpoint. The checkpoint file remembers the second it was opened, so a
    later run delivers what came since, and not what was there before."""
    table = make_table({"pk": "S"}, stream="KEYS_ONLY")
    for i in range(3):
        ddb.put_item(TableName=table, Item={"pk": {"S": f"old{i}"}})
    arn = ddb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    made = max(
        int(r["dynamodb"]["ApproximateCreationDateTime"].timestamp())
        for r in all_records(ddb_streams, arn)
    )
    opened_at = made + 1  # the mapping opens the shard in the second after the old writes
    path, latest = tmp_path / "checkpoints.json", {"StartingPosition": "LATEST"}
    first = mapping(
        ddb_streams, arn, Script(lambda batch: None), props=latest,
        checkpoints=Checkpoints.load(path, arn), clock=lambda: float(opened_at),
    )  # fmt: skip
    run = first.run()
    assert run.invocations == 0 and first.undelivered() == {}

    while time.time() < opened_at:  # new writes come in a later second than the opening
        time.sleep(0.05)
    for i in range(2):
        ddb.put_item(TableName=table, Item={"pk": {"S": f"new{i}"}})
    handler = Script(lambda batch: None)
    second = mapping(
        ddb_streams, arn, handler, props=latest, checkpoints=Checkpoints.load(path, arn)
    )
    (shard,) = ddb_streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
    assert second.undelivered() == {shard["ShardId"]: 2}, "what a run leaves is seen"
    second.run()
    assert handler.batches == [["new0", "new1"]] and second.undelivered() == {}
    assert (run.records_read, run.records_before_start) == (0, 3)


def all_records(ddb_streams: Any, arn: str) -> list[dict[str, Any]]:
    """Every record of the stream's one shard now, as boto3 reads it (DynamoDB Local: up to
    an empty page)."""
    (shard,) = ddb_streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
    iterator = ddb_streams.get_shard_iterator(
        StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    records: list[dict[str, Any]] = ddb_streams.get_records(ShardIterator=iterator)["Records"]
    return records
