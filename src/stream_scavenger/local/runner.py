"""A local event source mapping: DynamoDB Local's stream in, Lambda-shaped batches out.

Honours the mapping's batch size, starting position, filter criteria (matched
with moto's implementation of EventBridge patterns) and the partial-batch
contract: after a batch reports failures it resumes at the lowest reported
sequence number, up to the mapping's retry attempts, then gives up on the rest
of the batch and records the on-failure message Lambda would send.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .assembly import TableDef
from .invoker import FunctionError

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


@dataclass
class RunStats:
    """What a local run did."""

    records_read: int = 0
    records_filtered_out: int = 0
    invocations: int = 0
    function_errors: int = 0
    partial_failures: int = 0
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
    ) -> None:
        self._streams = streams_client
        self._stream_arn = stream_arn
        self._invoke = invoke
        self._batch_size = int(mapping_properties.get("BatchSize", 100))
        self._starting_position = str(mapping_properties.get("StartingPosition", "TRIM_HORIZON"))
        self._retry_attempts = int(mapping_properties.get("MaximumRetryAttempts", -1))
        self._patterns = _patterns(mapping_properties)
        self._region = region

    def run(self) -> RunStats:
        """Process everything now in the stream, shard by shard; return what happened."""
        stats = RunStats()
        description = self._streams.describe_stream(StreamArn=self._stream_arn)["StreamDescription"]
        for shard in description["Shards"]:
            batch: list[dict[str, Any]] = []
            for record in self._read_shard(shard["ShardId"]):
                stats.records_read += 1
                if self._patterns and not any(p.matches_event(record) for p in self._patterns):
                    stats.records_filtered_out += 1
                    continue
                batch.append(record)
                if len(batch) == self._batch_size:
                    self._deliver(batch, shard["ShardId"], stats)
                    batch = []
            if batch:
                self._deliver(batch, shard["ShardId"], stats)
        return stats

    def _read_shard(self, shard_id: str) -> Iterator[dict[str, Any]]:
        iterator = self._streams.get_shard_iterator(
            StreamArn=self._stream_arn, ShardId=shard_id, ShardIteratorType=self._starting_position
        )["ShardIterator"]
        while iterator:
            page = self._streams.get_records(ShardIterator=iterator, Limit=1000)
            for record in page["Records"]:
                shaped = lambda_shape(record)
                shaped["eventSourceARN"] = self._stream_arn
                shaped.setdefault("awsRegion", self._region)
                yield shaped
            if not page["Records"]:
                return
            iterator = page.get("NextShardIterator")

    def _deliver(self, batch: list[dict[str, Any]], shard_id: str, stats: RunStats) -> None:
        attempts = 0
        while batch:
            stats.invocations += 1
            try:
                response = self._invoke({"Records": batch})
            except FunctionError:
                stats.function_errors += 1
                failed_from = 0
            else:
                stats.responses.append(response)
                checkpoint = _checkpoint(batch, response)
                if checkpoint is None:
                    return
                failed_from = checkpoint
                stats.partial_failures += 1
            attempts += 1
            batch = batch[failed_from:]
            if 0 <= self._retry_attempts < attempts:
                stats.given_up.append(_on_failure_message(batch, shard_id, self._stream_arn))
                return


def _checkpoint(batch: list[dict[str, Any]], response: Any) -> int | None:
    """Index to resume from, or None when the batch succeeded (Lambda's stream rules)."""
    failures = (response or {}).get("batchItemFailures") if isinstance(response, dict) else None
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


def _on_failure_message(
    batch: list[dict[str, Any]], shard_id: str, stream_arn: str
) -> dict[str, Any]:
    first, last = batch[0]["dynamodb"], batch[-1]["dynamodb"]
    return {
        "DDBStreamBatchInfo": {
            "shardId": shard_id,
            "startSequenceNumber": first["SequenceNumber"],
            "endSequenceNumber": last["SequenceNumber"],
            "batchSize": len(batch),
            "streamArn": stream_arn,
        }
    }


def _patterns(properties: Mapping[str, Any]) -> list[Any]:
    filters = (properties.get("FilterCriteria") or {}).get("Filters") or []
    if not filters:
        return []
    from moto.events.models import EventPattern

    return [EventPattern.load(f["Pattern"]) for f in filters if isinstance(f.get("Pattern"), str)]


def table_names_for(tables: Mapping[str, TableDef], prefix: str = "") -> dict[str, str]:
    """Local table names: the logical IDs (DynamoDB Local accepts them), optionally prefixed."""
    return {logical_id: f"{prefix}{logical_id}" for logical_id in tables}


def dumps(obj: Any) -> str:
    """JSON for messages and reports."""
    return json.dumps(obj, sort_keys=True, default=str)
