"""Redrive records given up on: on-failure messages in, deletes out.

Lambda's on-failure message for a DynamoDB stream names a shard and a range of
sequence numbers, not the records. While the stream still holds them (24 hours),
they are read back, replayed through the scavenger's own delete logic, and the
message is deleted only once every record of the range succeeded. A range the
stream no longer holds is reported, and its message kept.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .runner import lambda_record

Replay = Callable[[Mapping[str, Any]], Any]
#: Answers that mean the range cannot be read (gone, or a position the shard never had).
_GONE = {
    "TrimmedDataAccessException",
    "ResourceNotFoundException",
    "ExpiredIteratorException",
    "ValidationException",
    "InvalidArgumentException",
}


@dataclass
class RedriveReport:
    """What a redrive did, per on-failure message."""

    dry_run: bool = False
    messages: int = 0
    records: int = 0
    redriven: list[dict[str, Any]] = field(default_factory=list)
    failed_again: list[dict[str, Any]] = field(default_factory=list)
    unreadable: list[dict[str, Any]] = field(default_factory=list)
    not_understood: int = 0

    @property
    def ok(self) -> bool:
        """Every message was redriven (or, in a dry run, could be)."""
        return not (self.failed_again or self.unreadable or self.not_understood)


def read_range(
    streams: Any, info: Mapping[str, Any], region: str = "us-east-1"
) -> list[dict[str, Any]] | None:
    """The records of one on-failure range, Lambda-shaped; None if the stream no longer has them."""
    start, end = int(info["startSequenceNumber"]), int(info["endSequenceNumber"])
    try:
        iterator = streams.get_shard_iterator(
            StreamArn=info["streamArn"],
            ShardId=info["shardId"],
            ShardIteratorType="AT_SEQUENCE_NUMBER",
            SequenceNumber=info["startSequenceNumber"],
        )["ShardIterator"]
        records: list[dict[str, Any]] = []
        while iterator:
            page = streams.get_records(ShardIterator=iterator, Limit=1000)
            for record in page["Records"]:
                if int(record["dynamodb"]["SequenceNumber"]) > end:
                    return _complete(records, start)
                records.append(lambda_record(record, info["streamArn"], region))
            if not page["Records"]:
                break
            iterator = page.get("NextShardIterator")
        return _complete(records, start)
    except Exception as err:  # noqa: BLE001 - only "the range cannot be read" is expected here
        code = getattr(err, "response", {}).get("Error", {}).get("Code")
        if code in _GONE or type(err).__name__ == "ParamValidationError":
            return None
        raise


def _complete(records: list[dict[str, Any]], start: int) -> list[dict[str, Any]] | None:
    if not records or int(records[0]["dynamodb"]["SequenceNumber"]) != start:
        return None  # the start of the range has been trimmed away
    return records


def redrive(
    sqs: Any,
    queue_url: str,
    streams: Any,
    replay: Replay,
    *,
    dry_run: bool = False,
    region: str = "us-east-1",
    max_messages: int = 10_000,
) -> RedriveReport:
    """Redrive every message now in the queue (at most ``max_messages``)."""
    report = RedriveReport(dry_run=dry_run)
    seen: set[str] = set()
    held: list[str] = []
    while report.messages < max_messages:
        received = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=60, WaitTimeSeconds=0
        ).get("Messages", [])
        fresh = [m for m in received if m["MessageId"] not in seen]
        if not fresh:
            break
        for message in fresh:
            seen.add(message["MessageId"])
            held.append(message["ReceiptHandle"])
            report.messages += 1
            _redrive_one(sqs, queue_url, streams, replay, message, report, region)
    if dry_run:
        for receipt in held:  # make them visible again: a dry run changes nothing
            sqs.change_message_visibility(
                QueueUrl=queue_url, ReceiptHandle=receipt, VisibilityTimeout=0
            )
    return report


def _redrive_one(
    sqs: Any,
    queue_url: str,
    streams: Any,
    replay: Replay,
    message: Mapping[str, Any],
    report: RedriveReport,
    region: str,
) -> None:
    try:
        info = json.loads(message["Body"])["DDBStreamBatchInfo"]
    except (ValueError, KeyError, TypeError):
        report.not_understood += 1
        return
    records = read_range(streams, info, region)
    if records is None:
        report.unreadable.append(info)
        return
    report.records += len(records)
    if report.dry_run:
        report.redriven.append(info)
        return
    response = replay({"Records": records})
    if isinstance(response, Mapping) and not response.get("batchItemFailures"):
        sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        report.redriven.append(info)
    else:
        report.failed_again.append(info)
