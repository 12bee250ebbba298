"""What a backfill refuses or keeps when it cannot decide as the stream's records would
have: filters on fields a scanned item's record only makes up, a path through a list, an
unknown view type; a worker that answers in time whatever its write budget; and the
budgets themselves."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from stream_scavenger import cli
from stream_scavenger.filters import images_in_filters
from stream_scavenger.runtime.scavenger import backfill as worker
from stream_scavenger.runtime.scavenger.backfill import (
    BackfillError,
    Budget,
    SegmentReader,
    SourceTable,
    Stopped,
    as_records,
    check_filters,
    scavenge_page,
)
from stream_scavenger.runtime.scavenger.config import (
    BACKFILL_SEGMENT,
    BACKFILL_TOTAL_SEGMENTS,
    BackfillConfig,
    ScavengerConfig,
    TargetConfig,
)
from stream_scavenger.runtime.scavenger.filtering import FilterPattern, MappingFilters

_names = itertools.count()
PAID = {"dynamodb": {"NewImage": {"status": {"S": ["PAID"]}}}}


@pytest.mark.parametrize(
    ("pattern", "refused"),
    [
        (PAID, []),
        ({"eventName": ["INSERT"], "dynamodb": {"Keys": {"id": {"S": [{"prefix": "m"}]}}}}, []),
        ({"dynamodb": {"OldImage": {"status": {"S": [{"exists": False}]}}}}, ["dynamodb.OldImage"]),
        (
            {"dynamodb": {"ApproximateCreationDateTime": [{"numeric": [">=", 1]}]}},
            ["dynamodb.ApproximateCreationDateTime"],
        ),
        ({"dynamodb": {"SizeBytes": [{"numeric": [">", 30]}]}}, ["dynamodb.SizeBytes"]),
        ({"$or": [PAID, {"eventID": [{"prefix": "x"}]}]}, ["eventID"]),
        (
            {"dynamodb": {"$or": [{"SequenceNumber": ["1"]}, PAID["dynamodb"]]}},
            ["dynamodb.SequenceNumber"],
        ),
        (
            {"awsRegion": ["eu-west-1"], "eventSourceARN": [{"prefix": "arn"}]},
            ["awsRegion", "eventSourceARN"],
        ),
    ],
)
def test_filters_on_what_a_scanned_item_only_makes_up_are_refused(
    pattern: dict[str, Any], refused: list[str]
) -> None:
    if not refused:
        check_filters([pattern])
        return
    with pytest.raises(BackfillError) as raised:
        check_filters([pattern])
    for field in refused:
        assert field in str(raised.value)


def test_images_read_inside_an_or_decide_the_view_type() -> None:
    """A NewImage filter inside $or needs NEW_IMAGE: before, the stream was KEYS_ONLY and
    the deployed filter never matched."""
    assert images_in_filters([{"$or": [{"eventName": ["MODIFY"]}, PAID]}]) == {"NewImage"}
    nested = {"dynamodb": {"$or": [{"Keys": {}}, {"OldImage": {"a": {"S": ["x"]}}}]}}
    assert images_in_filters([nested]) == {"OldImage"}
    assert images_in_filters([{"eventName": ["INSERT"]}]) == set()


def test_a_path_through_a_list_of_objects_never_matches() -> None:
    """EventBridge looks into each element of a list; this matcher does not, so it keeps
    (before, ``exists: false`` through a list matched: a backfill would have deleted)."""
    record = {"dynamodb": {"NewImage": {"tags": {"L": [{"S": "keep"}, {"N": "1"}]}}}}
    for rule in ([{"exists": False}], ["keep"], [{"exists": True}]):
        pattern = {"dynamodb": {"NewImage": {"tags": {"L": {"S": rule}}}}}
        assert not FilterPattern(pattern).matches(record)
    string_set = {"dynamodb": {"NewImage": {"tags": {"SS": ["a", "b"]}}}}
    absent = {"dynamodb": {"NewImage": {"tags": {"SS": {"x": [{"exists": False}]}}}}}
    assert FilterPattern(absent).matches(string_set)  # a list of strings: nothing below it


class NeverCalled:
    """A scavenger whose handler must not be called."""

    config = ScavengerConfig((TargetConfig("staging", {"id": "id"}, key_types={"id": "S"}),))

    def handle(self, event: Any, context: Any) -> Any:
        raise AssertionError("a call started after the deadline")


def test_no_call_starts_after_the_deadline_and_the_records_are_named() -> None:
    records = as_records(
        [{"id": {"S": f"m{i}"}} for i in range(5)], SourceTable("t", ("id",)), 0, 3
    )
    result = scavenge_page(NeverCalled(), MappingFilters(), records, deadline=time.monotonic() - 1)
    assert sorted(result.failed) == sorted(r["dynamodb"]["SequenceNumber"] for r in records)
    assert result.calls == 0


class EmptyScan:
    """A source with nothing in the segment; it keeps each Scan's Limit."""

    def __init__(self) -> None:
        self.limits: list[int] = []

    def scan(self, **request: Any) -> dict[str, Any]:
        self.limits.append(request["Limit"])
        return {"Items": [], "ConsumedCapacity": {"CapacityUnits": 0.5}}


class Context:
    def get_remaining_time_in_millis(self) -> int:
        return 900_000


@pytest.mark.parametrize(("units", "limit"), [(None, 1000), (100.0, 1000), (2.0, 120), (0.01, 1)])
def test_the_worker_makes_pages_its_write_budget_can_delete_in_time(
    units: float | None, limit: int
) -> None:
    """Before, a page of 1,000 items at 1 write unit per second outlasted the 15-minute
    worker; now a page's deletes fit a minute of the budget (one target acting: a unit a
    key)."""
    scan = EmptyScan()
    settings = BackfillConfig("messages", ("id",), page_size=1000, write_units_per_s=units)
    event = {BACKFILL_SEGMENT: 0, BACKFILL_TOTAL_SEGMENTS: 1}
    answer = worker.scan_segment(scan, NeverCalled(), settings, event, Context())
    assert answer["done"] and scan.limits == [limit]


def test_the_worker_refuses_filters_a_scan_cannot_decide() -> None:
    settings = BackfillConfig(
        "messages",
        ("id",),
        filters=(json.dumps({"dynamodb": {"OldImage": PAID["dynamodb"]["NewImage"]}}),),
    )
    event = {BACKFILL_SEGMENT: 0, BACKFILL_TOTAL_SEGMENTS: 1}
    with pytest.raises(BackfillError, match="dynamodb.OldImage"):
        worker.scan_segment(EmptyScan(), NeverCalled(), settings, event, Context())


# ---- the deployed function's source: its view type from the mapping's stream ----------


class StubLambda:
    """GetFunctionConfiguration and one event source mapping, as Lambda answers them."""

    def __init__(self, environment: dict[str, str], mapping: dict[str, Any]) -> None:
        self.environment, self.mapping = environment, mapping

    def get_function_configuration(self, FunctionName: str) -> dict[str, Any]:  # noqa: N803
        return {"FunctionArn": f"arn:aws:lambda:us-east-1:1:function:{FunctionName}",
                "Environment": {"Variables": self.environment}}  # fmt: skip

    def get_paginator(self, operation: str) -> StubLambda:
        assert operation == "list_event_source_mappings"
        return self

    def paginate(self, FunctionName: str) -> Iterator[dict[str, Any]]:  # noqa: N803
        yield {"EventSourceMappings": [self.mapping]}

    def get_event_source_mapping(self, UUID: str) -> dict[str, Any]:  # noqa: N803
        return self.mapping


@pytest.fixture
def keys_only_source(ddb: Any) -> tuple[str, str, str]:
    """A source whose KEYS_ONLY stream was turned off since (DescribeTable no longer shows
    it), a target holding the copies, and the old stream's ARN."""
    n = next(_names)
    source, target = f"guard{n}-messages", f"guard{n}-staging"
    for name, stream in ((source, True), (target, False)):
        ddb.create_table(
            TableName=name,
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
            **({"StreamSpecification": {"StreamEnabled": True, "StreamViewType": "KEYS_ONLY"}}
               if stream else {}),
        )  # fmt: skip
    for i in range(6):
        ddb.put_item(TableName=source, Item={"id": {"S": f"m{i}"}, "status": {"S": "PAID"}})
        ddb.put_item(TableName=target, Item={"id": {"S": f"m{i}"}})
    arn = ddb.describe_table(TableName=source)["Table"]["LatestStreamArn"]
    ddb.update_table(TableName=source, StreamSpecification={"StreamEnabled": False})
    return source, target, arn


@pytest.mark.ddb
def test_with_function_name_the_view_type_is_the_mapping_streams(
    ddb: Any, ddb_local: Any, keys_only_source: tuple[str, str, str],
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """The real records were KEYS_ONLY, so a NewImage filter never selected one and the
    scavenger deleted nothing; before, the table no longer said and NEW_IMAGE was taken."""
    source, target, arn = keys_only_source
    assert "StreamSpecification" not in ddb.describe_table(TableName=source)["Table"]
    environment = ScavengerConfig((TargetConfig(target, {"id": "id"}, key_types={"id": "S"}),))
    mapping = {"UUID": "u-1", "EventSourceArn": arn, "State": "Enabled",
               "FilterCriteria": {"Filters": [{"Pattern": json.dumps(PAID)}]}}  # fmt: skip
    stub = StubLambda(environment.to_env(), mapping)
    real = cli._client
    monkeypatch.setattr(cli, "_client", lambda s, url: stub if s == "lambda" else real(s, url))
    args = ["backfill", "--function-name", "paid", "--endpoint-url", ddb_local.endpoint_url,
            "--no-checkpoint", "--segments", "1"]  # fmt: skip
    assert cli.main(args) == 0
    assert "items scanned: 6, filtered out: 6, selected: 0" in capsys.readouterr().out
    assert ddb.scan(TableName=target)["Count"] == 6

    mapping["EventSourceArn"] = arn.replace("/stream/", "/stream/gone-")
    assert cli.main(args) == 2
    assert "cannot tell which images" in capsys.readouterr().err


# ---- the budgets ---------------------------------------------------------------------


def test_a_budget_settles_with_what_was_consumed() -> None:
    """Units given back when a call cost less than its estimate, owed when it cost more."""
    now = [1.0]
    stopped = threading.Event()
    stopped.set()  # a take that would wait raises Stopped at once
    budget = Budget(10.0, stopped, clock=lambda: now[0])
    now[0] = 2.0  # a second: 10 units banked
    budget.take(10.0)
    budget.settle(10.0, 4.0)  # 6 back
    budget.take(6.0)
    budget.settle(1.0, 5.0)  # 4 owed
    with pytest.raises(Stopped):
        budget.take(1.0)


def test_a_read_budget_makes_pages_that_fit_a_second_of_it() -> None:
    clock = itertools.count(0.0, 10.0)  # every look at the clock: 10 s later, a full bucket
    budget = Budget(10.0, clock=lambda: float(next(clock)))
    scan = EmptyScan()
    reader = SegmentReader(scan, SourceTable("t", ("id",)), 0, 1, None, budget)
    reader.unit_per_item = 0.5  # 4 KB items: half a read unit each, eventually consistent
    list(reader.pages(1000, threading.Event()))
    assert scan.limits == [20]


def test_a_checkpoint_keeps_each_segments_page_count_for_a_resumed_run(tmp_path: Any) -> None:
    """A resumed run names a record by its page's place in the segment (before: page numbers
    started at 0 again, so "segment 1, page 0" named another page than the first run's)."""
    from stream_scavenger.backfill import Checkpoint

    path = tmp_path / "cp.json"
    identity = {"table": "t", "function": "f", "configuration": "c", "segments": 2}
    checkpoint = Checkpoint.load(path, identity)
    for n in range(3):
        checkpoint.save(1, {"id": {"S": f"m{n}"}}, 10)
    checkpoint.save(0, None, 4)
    resumed = Checkpoint.load(path, identity)
    assert resumed.pages == {0: 1, 1: 3} and resumed.position(1) == {"id": {"S": "m2"}}
    assert resumed.scanned == 34 and resumed.done == {0}
