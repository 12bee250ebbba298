"""Redrive honours the event source mapping's filters, from the assembly or the deployed mapping.

A small app whose scavenger deletes staging copies only of messages whose NewImage has
``status = PAID``. Its mapping gives up on the PAID records; the range of the on-failure
message also holds the DRAFT records between them, which the mapping filtered out and
which must survive a redrive. DynamoDB Local for the tables and the stream, moto's SQS on
loopback; with ``--function-name``, Lambda's control plane (the function's configuration
and its mappings) is a stub holding what AWS would answer.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_dynamodb as dynamodb
from redrivekit import (
    give_up_on_everything,
    item_count,
    queue_depth,
    redrive_cli,
    send_range,
    stream_records,
    wrap_clients,
)
from sqsserver import sqs_endpoint_fixture  # noqa: F401 - the sqs_endpoint fixture

from stream_scavenger import StreamScavenger
from stream_scavenger.local.event_source_mapping import MappingFilters
from stream_scavenger.redrive import BatchRange, Kept, Outcome, _selected

pytestmark = pytest.mark.ddb
PAID = {"dynamodb": {"NewImage": {"status": {"S": ["PAID"]}}}}
KEY = "arn:aws:kms:us-east-1:123456789012:key/k"


def build(out: Path, **options: Any) -> Path:
    app = cdk.App(outdir=str(out))
    stack = cdk.Stack(app, "PaidOnly")
    key = {
        "partition_key": dynamodb.Attribute(name="messageId", type=dynamodb.AttributeType.STRING),
        "sort_key": dynamodb.Attribute(name="createdAt", type=dynamodb.AttributeType.NUMBER),
    }
    messages = dynamodb.Table(stack, "Messages", **key)
    staging = dynamodb.Table(stack, "Staging", **key)
    scavenger = StreamScavenger(
        stack, "Scavenger", source_table=messages, target_table=staging, filters=[PAID], **options
    )
    app.synth()
    assert scavenger.stream_view_type == dynamodb.StreamViewType.NEW_IMAGE
    return out


@pytest.fixture(scope="module")
def assembly(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("paid") / "cdk.out")


def fill(ddb: Any, messages: str, staging: str) -> None:
    """40 messages, even ones PAID and odd ones DRAFT, all with staging copies."""
    for i in range(40):
        key = {"messageId": {"S": f"m{i}"}, "createdAt": {"N": str(i)}}
        ddb.put_item(TableName=staging, Item=key)
        status = "PAID" if i % 2 == 0 else "DRAFT"
        ddb.put_item(TableName=messages, Item={**key, "status": {"S": status}})


@pytest.fixture
def given_up(
    assembly: Path, sqs_endpoint: str, ddb_local: Any, ddb: Any, ddb_streams: Any
) -> dict[str, Any]:
    """The mapping gave up on the 20 PAID records (m0..m38), so its message's range holds
    the DRAFT records m1..m37 too."""
    g = give_up_on_everything(
        assembly, (ddb, ddb_streams), sqs_endpoint, ddb_local.endpoint_url, fill, prefix="paid"
    )
    assert g["run"].records_filtered_out == 20 and g["run"].records_given_up == 20
    return g


def staging_keys(ddb: Any, g: dict[str, Any]) -> set[int]:
    items = ddb.scan(TableName=g["staging"])["Items"]
    return {int(item["createdAt"]["N"]) for item in items}


DRAFTS = set(range(1, 40, 2))


def test_redrive_replays_only_what_the_filters_select(
    given_up: dict[str, Any], ddb: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    code = redrive_cli(given_up)
    assert staging_keys(ddb, given_up) == DRAFTS, "DRAFT copies stay, PAID copies go"
    assert queue_depth(given_up["sqs"], given_up["queue_url"]) == 0
    assert code == 0
    out = capsys.readouterr().out
    assert "messages: 1, records: 20, filtered out: 19, redriven: 1, kept: 0" in out


def test_a_dry_run_counts_the_filtered_out_records(
    given_up: dict[str, Any], ddb: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    code = redrive_cli(given_up, "--dry-run")
    assert item_count(ddb, given_up["staging"]) == 40
    assert queue_depth(given_up["sqs"], given_up["queue_url"]) == 1
    assert code == 0
    out = capsys.readouterr().out
    assert "messages: 1, records: 20, filtered out: 19, would redrive: 1, kept: 0" in out


class StubLambda:
    """Lambda's control plane as AWS answers it: the configuration, mappings in pages (without
    encrypted filter criteria) and each mapping in full."""

    def __init__(
        self, function_arn: str, environment: dict[str, str], pages: list[list[dict[str, Any]]]
    ) -> None:
        self.function_arn, self.environment, self.pages = function_arn, environment, pages

    def get_event_source_mapping(self, UUID: str) -> dict[str, Any]:  # noqa: N803
        (mapping,) = [m for page in self.pages for m in page if m["UUID"] == UUID]
        return {k: v for k, v in mapping.items() if k != "Listed"}

    def get_function_configuration(self, FunctionName: str) -> dict[str, Any]:  # noqa: N803
        assert FunctionName == "paid-scavenger"
        return {"FunctionArn": self.function_arn, "Environment": {"Variables": self.environment}}

    def get_paginator(self, operation: str) -> StubLambda:
        assert operation == "list_event_source_mappings"
        return self

    def paginate(self, FunctionName: str) -> Iterator[dict[str, Any]]:  # noqa: N803
        assert FunctionName == "paid-scavenger"
        for page in self.pages:
            yield {"EventSourceMappings": [m.get("Listed", m) for m in page]}


def deployed(g: dict[str, Any], stream_arn: str | None = None, **config: Any) -> dict[str, Any]:
    """The mapping as ListEventSourceMappings answers it (FilterCriteria as deployed)."""
    props = g["function"].mapping.properties
    return {
        "UUID": str(uuid.uuid4()),
        "EventSourceArn": stream_arn or g["stream_arn"],
        "FunctionArn": g["function_arn"],
        "FilterCriteria": props["FilterCriteria"],
        "State": "Enabled",
        **config,
    }


def use_stub(
    monkeypatch: pytest.MonkeyPatch,
    g: dict[str, Any],
    pages: list[list[dict[str, Any]]],
    **environment: str,
) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "local")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "local")
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", "http://127.0.0.1:9")  # never real AWS
    env = {**g["function"].resolved_environment(g["names"]), **environment}
    stub = StubLambda(g["function_arn"], env, pages)
    wrap_clients(monkeypatch, **{"lambda": lambda _: stub})


def test_with_function_name_the_deployed_mappings_filters_apply(
    given_up: dict[str, Any],
    ddb: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The function's mappings come in two pages; the one reading this stream is on the second,
    and its criteria are encrypted: only GetEventSourceMapping returns them."""
    other = deployed(given_up, "arn:aws:dynamodb:us-east-1:123456789012:table/x/stream/1")
    mapping = deployed(given_up, KMSKeyArn=KEY)
    mapping["Listed"] = {k: v for k, v in mapping.items() if k != "FilterCriteria"}
    use_stub(monkeypatch, given_up, [[other], [mapping]])

    code = redrive_cli(given_up, config=["--function-name", "paid-scavenger"])
    assert staging_keys(ddb, given_up) == DRAFTS
    assert queue_depth(given_up["sqs"], given_up["queue_url"]) == 0
    assert code == 0
    assert "records: 20, filtered out: 19, redriven: 1" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("mappings", "reason"),
    [
        ("none", "no event source mapping of the function reads stream"),
        ("two", "2 event source mappings of the function read stream"),
        ("bad pattern", "cannot read the mapping's filter criteria"),
        ("encrypted", "cannot read the mapping's filter criteria: encrypted with"),
        ("criteria error", "cannot read the mapping's filter criteria: {'ErrorCode'"),
    ],
)
def test_filters_that_cannot_be_determined_keep_the_message(
    given_up: dict[str, Any],
    ddb: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    mappings: str,
    reason: str,
) -> None:
    pages = {
        "none": [[]],
        "two": [[deployed(given_up)], [deployed(given_up)]],
        "bad pattern": [[deployed(given_up, FilterCriteria={"Filters": [{"Pattern": "{"}]})]],
        "encrypted": [[deployed(given_up, FilterCriteria=None, KMSKeyArn=KEY)]],
        "criteria error": [
            [
                deployed(
                    given_up,
                    FilterCriteria=None,
                    KMSKeyArn=KEY,
                    FilterCriteriaError={"ErrorCode": "KMSAccessDenied", "Message": "denied"},
                )
            ]
        ],
    }[mappings]
    use_stub(monkeypatch, given_up, pages)

    code = redrive_cli(given_up, config=["--function-name", "paid-scavenger"])
    assert item_count(ddb, given_up["staging"]) == 40
    assert queue_depth(given_up["sqs"], given_up["queue_url"]) == 1
    assert code == 1
    out = capsys.readouterr().out
    assert "(filters unknown): " + reason in out


def test_a_message_from_another_function_is_kept(
    given_up: dict[str, Any],
    ddb: Any,
    ddb_streams: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Two functions on one stream sharing a queue: the other one's message is not ours."""
    (message,) = given_up["sqs"].receive_message(QueueUrl=given_up["queue_url"])["Messages"]
    body = json.loads(message["Body"])
    body["requestContext"]["functionArn"] = given_up["function_arn"].replace("Scavenger", "Other")
    given_up["sqs"].delete_message(
        QueueUrl=given_up["queue_url"], ReceiptHandle=message["ReceiptHandle"]
    )
    given_up["sqs"].send_message(QueueUrl=given_up["queue_url"], MessageBody=json.dumps(body))
    use_stub(monkeypatch, given_up, [[deployed(given_up)]])

    code = redrive_cli(given_up, config=["--function-name", "paid-scavenger"])
    assert item_count(ddb, given_up["staging"]) == 40
    assert queue_depth(given_up["sqs"], given_up["queue_url"]) == 1
    assert code == 1
    assert "(filters unknown): the message is from function" in capsys.readouterr().out


def test_a_range_the_filters_would_not_have_delivered_is_kept(
    given_up: dict[str, Any], ddb: Any, ddb_streams: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """Lambda only delivers (and gives up on) records its filters select: a range that starts
    on a DRAFT record, or whose batch was smaller than what the filters select in it, says
    the filters were not these. Replaying with these filters could delete what they keep."""
    (message,) = given_up["sqs"].receive_message(QueueUrl=given_up["queue_url"])["Messages"]
    given_up["sqs"].delete_message(
        QueueUrl=given_up["queue_url"], ReceiptHandle=message["ReceiptHandle"]
    )
    shard_id, records = stream_records(ddb_streams, given_up["stream_arn"])
    send_range(given_up["sqs"], given_up["queue_url"], shard_id, given_up["stream_arn"],
               records[1:5], given_up["function_arn"])  # fmt: skip
    body = json.loads(message["Body"])
    body["DDBStreamBatchInfo"]["batchSize"] = 10  # the range holds 20 PAID records
    given_up["sqs"].send_message(QueueUrl=given_up["queue_url"], MessageBody=json.dumps(body))

    code = redrive_cli(given_up)
    assert item_count(ddb, given_up["staging"]) == 40
    assert queue_depth(given_up["sqs"], given_up["queue_url"]) == 2
    assert code == 1
    out = capsys.readouterr().out
    assert out.count("(filters unknown): ") == 2
    assert "its first record is not one the mapping's filters select" in out
    assert "batchSize 10" in out


def test_a_dry_run_function_is_refused(
    given_up: dict[str, Any],
    ddb: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A scavenger deployed with dry_run=True deletes nothing and answers success: replaying
    through it would drop every message with its keys still there. Same app and tables."""
    dry = build(tmp_path / "cdk.out", dry_run=True)

    code = redrive_cli(given_up, config=["--cloud-assembly", str(dry)])
    assert item_count(ddb, given_up["staging"]) == 40
    assert queue_depth(given_up["sqs"], given_up["queue_url"]) == 1
    assert code == 2
    assert "dry_run" in capsys.readouterr().err


# ---- batchSize: the count of records Lambda gave up on, which the replay must match ----------


def paid_or_draft(n: int, status: str) -> dict[str, Any]:
    record = {"eventName": "INSERT", "dynamodb": {"SequenceNumber": str(n)}}
    record["dynamodb"]["NewImage"] = {"status": {"S": status}}
    return record


@pytest.mark.parametrize("batch_size", [None, 1, 3, 4])
def test_a_batch_size_other_than_the_selected_count_is_refused(batch_size: int | None) -> None:
    """Two of the four records pass the filters: only a batchSize of 2 says these filters
    delivered the batch. Larger, the batch held records these filters leave out (they would
    not be replayed); smaller, it held fewer than would be replayed."""
    filters = MappingFilters.of({"FilterCriteria": {"Filters": [{"Pattern": json.dumps(PAID)}]}})
    records = [paid_or_draft(1, "PAID"), paid_or_draft(2, "DRAFT"), paid_or_draft(3, "DRAFT")]
    records.append(paid_or_draft(4, "PAID"))
    with pytest.raises(Kept) as kept:
        _selected(records, filters, BatchRange("arn", "shard", "1", "4", batch_size))
    assert kept.value.outcome is Outcome.FILTERS_UNKNOWN
    assert len(_selected(records, filters, BatchRange("arn", "shard", "1", "4", 2))) == 2


def test_a_batch_size_larger_than_what_the_filters_select_keeps_the_message(
    given_up: dict[str, Any], ddb: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """25 records given up on in a range where these filters select 20: five of them were
    records these filters leave out, and a replay would never delete their copies."""
    (message,) = given_up["sqs"].receive_message(QueueUrl=given_up["queue_url"])["Messages"]
    given_up["sqs"].delete_message(
        QueueUrl=given_up["queue_url"], ReceiptHandle=message["ReceiptHandle"]
    )
    body = json.loads(message["Body"])
    body["DDBStreamBatchInfo"]["batchSize"] = 25
    given_up["sqs"].send_message(QueueUrl=given_up["queue_url"], MessageBody=json.dumps(body))

    code = redrive_cli(given_up)
    assert item_count(ddb, given_up["staging"]) == 40
    assert queue_depth(given_up["sqs"], given_up["queue_url"]) == 1
    assert code == 1
    assert "(filters unknown): batchSize 25 is not the 20 record(s)" in capsys.readouterr().out


def test_the_local_mappings_message_for_a_partly_failed_batch_is_redriven(
    assembly: Path, sqs_endpoint: str, ddb_local: Any, ddb: Any, ddb_streams: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """The batch of 20 PAID records fails from m8 on: the retries, and the message, hold
    m8..m38 (batchSize 16, the PAID records of that range), not the whole batch."""

    def fails_from_m8(event: Any) -> Any:
        for record in event["Records"]:
            if record["dynamodb"]["Keys"]["messageId"]["S"] == "m8":
                return {
                    "batchItemFailures": [{"itemIdentifier": record["dynamodb"]["SequenceNumber"]}]
                }
        return {"batchItemFailures": []}

    g = give_up_on_everything(
        assembly, (ddb, ddb_streams), sqs_endpoint, ddb_local.endpoint_url, fill,
        prefix="partly", handler=fails_from_m8,
    )  # fmt: skip
    (message,) = g["run"].given_up
    assert message["DDBStreamBatchInfo"]["batchSize"] == 16

    code = redrive_cli(g)
    assert staging_keys(ddb, g) == DRAFTS | {0, 2, 4, 6}, "m0..m6 succeeded before"
    assert queue_depth(g["sqs"], g["queue_url"]) == 0
    assert code == 0
    assert "records: 16, filtered out: 15, redriven: 1, kept: 0" in capsys.readouterr().out
