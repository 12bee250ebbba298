"""A local event source mapping: DynamoDB Local's stream in, Lambda-shaped batches out.

Modelled on Lambda's rules for DynamoDB streams, read from the mapping's own
template properties:

- batches of ``BatchSize`` records from one shard, from ``StartingPosition``;
- ``FilterCriteria``, matched with moto's implementation of EventBridge patterns;
- ``ReportBatchItemFailures``: after a partial failure, resume at the lowest
  reported sequence number (an unknown or empty identifier fails the batch);
- a function error retries the whole batch, split in two first when
  ``BisectBatchOnFunctionError`` is on;
- ``MaximumRetryAttempts`` and ``MaximumRecordAgeInSeconds``: records given up
  on are reported to the on-failure destination with the message Lambda sends;
- ``MaximumBatchingWindowInSeconds``: at the end of a shard's records, a
  partial batch waits up to the window for more records before it is delivered;
- a checkpoint per shard, saved after every batch, so an interrupted run
  resumes after the last finished batch.

Shards are read one after another (``ParallelizationFactor`` is not modelled).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .assembly import TableDef

Invoke = Callable[[Mapping[str, Any]], Any]


def create_table(client: Any, name: str, table: TableDef) -> str:
    """Create ``table`` as the template defines it (keys and stream); return its stream ARN."""
    props = table.properties
    request: dict[str, Any] = {
        "TableName": name,
        "KeySchema": props["KeySchema"],
        "AttributeDefinitions": props["AttributeDefinitions"],
        "BillingMode": "PAY_PER_REQUEST",
    }
    if table.stream_view_type:
        request["StreamSpecification"] = {
            "StreamEnabled": True,
            "StreamViewType": table.stream_view_type,
        }
    response = client.create_table(**request)
    return str(response["TableDescription"].get("LatestStreamArn", ""))


def table_names_for(tables: Mapping[str, TableDef], prefix: str = "") -> dict[str, str]:
    """Local table names: the logical IDs (DynamoDB Local accepts them), optionally prefixed."""
    return {logical_id: f"{prefix}{logical_id}" for logical_id in tables}


def lambda_record(record: Mapping[str, Any], stream_arn: str, region: str) -> dict[str, Any]:
    """A stream record as Lambda delivers it, with its stream ARN and a real region
    (DynamoDB Local says "ddblocal")."""
    shaped: dict[str, Any] = lambda_shape(record)
    shaped["eventSourceARN"] = stream_arn
    shaped["awsRegion"] = region
    return shaped


def lambda_shape(value: Any) -> Any:
    """A boto3-parsed stream record as Lambda delivers it: base64 binaries, epoch times."""
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, dt.datetime):
        return int(value.timestamp())
    if isinstance(value, Mapping):
        return {k: lambda_shape(v) for k, v in value.items()}
    if isinstance(value, list | set | tuple):
        return [lambda_shape(v) for v in value]
    return value


# ---- where records given up on go ---------------------------------------------------------


class Destination(Protocol):
    """An on-failure destination: receives Lambda's on-failure message."""

    def send(self, message: dict[str, Any]) -> None: ...


@dataclass
class MemoryDestination:
    """Keeps the messages (the default; tests read them)."""

    messages: list[dict[str, Any]] = field(default_factory=list)

    def send(self, message: dict[str, Any]) -> None:
        self.messages.append(message)


@dataclass
class FileDestination:
    """Appends each message as one JSON line to a file."""

    path: Path

    def send(self, message: dict[str, Any]) -> None:
        with self.path.open("a") as out:
            out.write(json.dumps(message, sort_keys=True) + "\n")


@dataclass
class SqsDestination:
    """Sends each message to an SQS queue (any endpoint the client points at)."""

    client: Any
    queue_url: str

    def send(self, message: dict[str, Any]) -> None:
        self.client.send_message(QueueUrl=self.queue_url, MessageBody=json.dumps(message))


# ---- checkpoints ----------------------------------------------------------------------------


@dataclass
class Checkpoints:
    """Last finished sequence number per shard, saved to ``path`` (if any) after each batch."""

    path: Path | None = None
    stream_arn: str = ""
    shards: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path | None, stream_arn: str) -> Checkpoints:
        """The checkpoints of ``stream_arn`` saved at ``path``; empty if there are none."""
        shards: dict[str, str] = {}
        if path is not None and path.exists():
            shards = dict(json.loads(path.read_text()).get(stream_arn, {}))
        return cls(path, stream_arn, shards)

    def done(self, shard_id: str, sequence_number: str) -> None:
        """Everything up to ``sequence_number`` in the shard is finished."""
        self.shards[shard_id] = sequence_number
        if self.path is not None:
            saved = json.loads(self.path.read_text()) if self.path.exists() else {}
            saved[self.stream_arn] = self.shards
            temporary = self.path.with_suffix(".tmp")
            temporary.write_text(json.dumps(saved, indent=1, sort_keys=True))
            temporary.replace(self.path)


# ---- the mapping ----------------------------------------------------------------------------


@dataclass
class RunStats:
    """What a local run did."""

    records_read: int = 0
    records_filtered_out: int = 0
    invocations: int = 0
    function_errors: int = 0
    partial_failures: int = 0
    bisections: int = 0
    records_given_up: int = 0
    given_up: list[dict[str, Any]] = field(default_factory=list)
    responses: list[Any] = field(default_factory=list)


class LocalEventSourceMapping:
    """Reads every shard of one stream to its end and feeds the records to ``invoke``."""

    def __init__(
        self,
        streams_client: Any,
        stream_arn: str,
        invoke: Invoke,
        mapping_properties: Mapping[str, Any],
        *,
        region: str = "us-east-1",
        on_failure: Destination | None = None,
        checkpoints: Checkpoints | None = None,
        clock: Callable[[], float] = time.time,
        on_batch: Callable[[int], None] | None = None,
        function_arn: str = "arn:aws:lambda:us-east-1:000000000000:function:local",
    ) -> None:
        self._streams = streams_client
        self._stream_arn = stream_arn
        self._invoke = invoke
        props = mapping_properties
        self._batch_size = int(props.get("BatchSize", 100))
        self._starting_position = str(props.get("StartingPosition", "TRIM_HORIZON"))
        self._retry_attempts = int(props.get("MaximumRetryAttempts", -1))
        self._max_age_s = int(props.get("MaximumRecordAgeInSeconds", -1))
        self._bisect = bool(props.get("BisectBatchOnFunctionError", False))
        self._window_s = float(props.get("MaximumBatchingWindowInSeconds", 0))
        self._partial = "ReportBatchItemFailures" in (props.get("FunctionResponseTypes") or [])
        self._patterns = _patterns(props)
        self._region = region
        self.on_failure: Destination = on_failure or MemoryDestination()
        self.checkpoints = checkpoints or Checkpoints()
        self._clock = clock
        self._on_batch = on_batch
        self._function_arn = function_arn

    def run(self) -> RunStats:
        """Process everything now in the stream, shard by shard; return what happened."""
        stats = RunStats()
        description = self._streams.describe_stream(StreamArn=self._stream_arn)["StreamDescription"]
        for shard in description["Shards"]:
            shard_id = shard["ShardId"]
            batch: list[dict[str, Any]] = []
            last: str | None = None
            for record in self._read_shard(shard_id):
                batch = self._take(record, batch, shard_id, stats)
                last = record["dynamodb"]["SequenceNumber"]
            deadline = time.monotonic() + self._window_s
            while batch and last and time.monotonic() < deadline:
                more = self._records_after(shard_id, last)
                for record in more:
                    batch = self._take(record, batch, shard_id, stats)
                    last = record["dynamodb"]["SequenceNumber"]
                if not more:
                    time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
            if batch:
                self._finish(batch, shard_id, stats)
        return stats

    def _take(
        self, record: dict[str, Any], batch: list[dict[str, Any]], shard_id: str, stats: RunStats
    ) -> list[dict[str, Any]]:
        """Add a read record to the batch (unless filtered out); deliver a full batch."""
        stats.records_read += 1
        if self._patterns and not any(p.matches_event(record) for p in self._patterns):
            stats.records_filtered_out += 1
            if not batch:
                self.checkpoints.done(shard_id, record["dynamodb"]["SequenceNumber"])
            return batch
        batch.append(record)
        if len(batch) == self._batch_size:
            self._finish(batch, shard_id, stats)
            return []
        return batch

    def _records_after(self, shard_id: str, sequence_number: str) -> list[dict[str, Any]]:
        iterator = self._streams.get_shard_iterator(
            StreamArn=self._stream_arn,
            ShardId=shard_id,
            ShardIteratorType="AFTER_SEQUENCE_NUMBER",
            SequenceNumber=sequence_number,
        )["ShardIterator"]
        page = self._streams.get_records(ShardIterator=iterator, Limit=1000)
        return [self._shape(record) for record in page["Records"]]

    def _shape(self, record: Mapping[str, Any]) -> dict[str, Any]:
        return lambda_record(record, self._stream_arn, self._region)

    def _read_shard(self, shard_id: str) -> Iterator[dict[str, Any]]:
        after = self.checkpoints.shards.get(shard_id)
        position = (
            {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": after}
            if after
            else {"ShardIteratorType": self._starting_position}
        )
        iterator = self._streams.get_shard_iterator(
            StreamArn=self._stream_arn, ShardId=shard_id, **position
        )["ShardIterator"]
        while iterator:
            page = self._streams.get_records(ShardIterator=iterator, Limit=1000)
            for record in page["Records"]:
                yield self._shape(record)
            if not page["Records"]:
                return
            iterator = page.get("NextShardIterator")

    def _finish(self, batch: list[dict[str, Any]], shard_id: str, stats: RunStats) -> None:
        self._deliver(batch, shard_id, stats, attempts=0)
        self.checkpoints.done(shard_id, batch[-1]["dynamodb"]["SequenceNumber"])
        if self._on_batch:
            self._on_batch(len(batch))

    def _deliver(
        self, batch: list[dict[str, Any]], shard_id: str, stats: RunStats, attempts: int
    ) -> None:
        while batch:
            batch = self._drop_expired(batch, shard_id, stats, attempts)
            if not batch:
                return
            stats.invocations += 1
            attempts += 1
            try:
                response = self._invoke({"Records": batch})
            except Exception:  # noqa: BLE001 - any handler exception is a function error
                stats.function_errors += 1
                if self._exhausted(attempts):
                    self._give_up(batch, shard_id, stats, "RetryAttemptsExhausted", attempts)
                    return
                if self._bisect and len(batch) > 1:
                    stats.bisections += 1
                    half = len(batch) // 2
                    self._deliver(batch[:half], shard_id, stats, attempts)
                    self._deliver(batch[half:], shard_id, stats, attempts)
                    return
                continue
            stats.responses.append(response)
            failed_from = _checkpoint(batch, response) if self._partial else None
            if failed_from is None:
                return
            stats.partial_failures += 1
            batch = batch[failed_from:]
            if self._exhausted(attempts):
                self._give_up(batch, shard_id, stats, "RetryAttemptsExhausted", attempts)
                return

    def _exhausted(self, attempts: int) -> bool:
        """Attempts so far include the first invocation; retries are the ones after it."""
        return 0 <= self._retry_attempts < attempts

    def _drop_expired(
        self, batch: list[dict[str, Any]], shard_id: str, stats: RunStats, attempts: int
    ) -> list[dict[str, Any]]:
        if self._max_age_s < 0:
            return batch
        oldest_allowed = self._clock() - self._max_age_s
        expired = [
            r for r in batch if r["dynamodb"].get("ApproximateCreationDateTime", 0) < oldest_allowed
        ]
        if expired:
            self._give_up(expired, shard_id, stats, "RecordAgeExceeded", attempts)
        return [r for r in batch if r not in expired]

    def _give_up(
        self,
        batch: list[dict[str, Any]],
        shard_id: str,
        stats: RunStats,
        condition: str,
        attempts: int,
    ) -> None:
        message = on_failure_message(
            batch, shard_id, self._stream_arn, condition, attempts, self._function_arn
        )
        stats.given_up.append(message)
        stats.records_given_up += len(batch)
        self.on_failure.send(message)


def on_failure_message(
    batch: list[dict[str, Any]],
    shard_id: str,
    stream_arn: str,
    condition: str,
    attempts: int,
    function_arn: str,
) -> dict[str, Any]:
    """The message Lambda sends to an on-failure destination for a DynamoDB stream batch."""
    first, last = batch[0]["dynamodb"], batch[-1]["dynamodb"]

    def iso(epoch: Any) -> str:
        return (
            dt.datetime.fromtimestamp(float(epoch or 0), dt.UTC).isoformat().replace("+00:00", "Z")
        )

    return {
        "requestContext": {
            "requestId": str(uuid.uuid4()),
            "functionArn": function_arn,
            "condition": condition,
            "approximateInvokeCount": attempts,
        },
        "responseContext": {
            "statusCode": 200,
            "executedVersion": "$LATEST",
            "functionError": "Unhandled",
        },
        "version": "1.0",
        "timestamp": dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z"),
        "DDBStreamBatchInfo": {
            "shardId": shard_id,
            "startSequenceNumber": first["SequenceNumber"],
            "endSequenceNumber": last["SequenceNumber"],
            "approximateArrivalOfFirstRecord": iso(first.get("ApproximateCreationDateTime")),
            "approximateArrivalOfLastRecord": iso(last.get("ApproximateCreationDateTime")),
            "batchSize": len(batch),
            "streamArn": stream_arn,
        },
    }


def _checkpoint(batch: list[dict[str, Any]], response: Any) -> int | None:
    """Index to resume from, or None when the batch succeeded (Lambda's stream rules)."""
    failures = response.get("batchItemFailures") if isinstance(response, dict) else None
    if not failures:
        return None
    positions = {r["dynamodb"]["SequenceNumber"]: i for i, r in enumerate(batch)}
    indexes = []
    for failure in failures:
        identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
        if identifier not in positions:
            return 0  # an unknown or empty identifier fails the whole batch
        indexes.append(positions[identifier])
    return min(indexes)


def _patterns(properties: Mapping[str, Any]) -> list[Any]:
    filters = (properties.get("FilterCriteria") or {}).get("Filters") or []
    if not filters:
        return []
    from moto.events.models import EventPattern

    return [EventPattern.load(f["Pattern"]) for f in filters if isinstance(f.get("Pattern"), str)]
