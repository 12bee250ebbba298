"""A local event source mapping: DynamoDB Local's stream in, Lambda-shaped batches out.

Modelled on Lambda's rules for DynamoDB streams, read from the mapping's own
template properties:

- batches of ``BatchSize`` records from one shard, from ``StartingPosition``
  (where a new mapping starts: the child of a shard it was reading is read
  from the child's first record);
- ``FilterCriteria``, matched with moto's implementation of EventBridge patterns;
- ``ReportBatchItemFailures``: after a partial failure, resume at the lowest
  reported sequence number (an unknown or empty identifier fails the batch);
- a function error retries the whole batch, split in two first when
  ``BisectBatchOnFunctionError`` is on;
- ``MaximumRetryAttempts`` and ``MaximumRecordAgeInSeconds``: records given up
  on are reported to the on-failure destination with the message Lambda sends;
- ``MaximumBatchingWindowInSeconds``: once the reader has caught up with a
  shard (an empty page), a partial batch waits up to the window for more
  records before it is delivered;
- a checkpoint per shard, saved after every batch's outcome (and past records
  filtered out), so an interrupted run resumes after the last finished batch.

Every page of ``DescribeStream`` is read, and shards are drained one after
another, a parent before its children (``ParallelizationFactor`` is not
modelled). An empty ``GetRecords`` page is not the end of a shard: a closed
shard is read until it has no next iterator, an open one until ``EMPTY_PAGES``
consecutive empty pages, ``POLL_INTERVAL_S`` apart. ``undelivered()`` then
re-reads every shard after its checkpoint, to prove that nothing was left.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .assembly import TableDef

Invoke = Callable[[Mapping[str, Any]], Any]
#: An open shard is drained after this many consecutive empty GetRecords pages ...
EMPTY_PAGES = 5
#: ... this far apart (seconds).
POLL_INTERVAL_S = 0.1


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

    @staticmethod
    def default_path(stream_arn: str) -> Path:
        """Where ``stream-scavenger run --table`` keeps a stream's checkpoints: a file named
        after its table and stream label, in ``.stream-scavenger/`` of the current directory."""
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", stream_arn.partition(":table/")[2] or stream_arn)
        return Path(".stream-scavenger") / f"checkpoint-{name}.json"

    def done(self, shard_id: str, sequence_number: str) -> None:
        """Everything up to ``sequence_number`` in the shard is finished."""
        self.shards[shard_id] = sequence_number
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            saved = json.loads(self.path.read_text()) if self.path.exists() else {}
            saved[self.stream_arn] = self.shards
            temporary = self.path.with_name(self.path.name + ".tmp")  # never the file itself
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
        empty_pages: int = EMPTY_PAGES,
        poll_interval_s: float = POLL_INTERVAL_S,
        sleep: Callable[[float], None] = time.sleep,
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
        self._filters = MappingFilters.of(props)
        self._region = region
        self.on_failure: Destination = on_failure or MemoryDestination()
        self.checkpoints = checkpoints or Checkpoints()
        self._clock = clock
        self._on_batch = on_batch
        self._function_arn = function_arn
        self._empty_pages = empty_pages
        self._poll_interval_s = poll_interval_s
        self._sleep = sleep

    def run(self) -> RunStats:
        """Process everything now in the stream, shard by shard; return what happened."""
        stats = RunStats()
        listed: set[str] = set()
        finished: set[str] = set()  # closed shards read to their end
        while True:
            # Listed again after each pass: a shard that closed meanwhile has children, and
            # (drained while it was open) its own last records, which come before theirs.
            shards = self.shards()
            if {s["ShardId"] for s in shards} <= listed:
                return stats
            for shard in shards:
                listed.add(shard["ShardId"])
                if shard["ShardId"] not in finished:
                    self._drain(shard, stats)
                if not _is_open(shard):
                    finished.add(shard["ShardId"])

    def shards(self) -> list[dict[str, Any]]:
        """Every shard of the stream (all ``DescribeStream`` pages), parents before children."""
        shards: list[dict[str, Any]] = []
        page: dict[str, Any] = {}
        while True:
            description = self._streams.describe_stream(StreamArn=self._stream_arn, **page)
            shards += description["StreamDescription"]["Shards"]
            last = description["StreamDescription"].get("LastEvaluatedShardId")
            if not last:
                break
            page = {"ExclusiveStartShardId": last}
        parents = {s["ShardId"]: s.get("ParentShardId") for s in shards}

        def generation(shard: Mapping[str, Any]) -> int:
            count, parent = 0, shard.get("ParentShardId")
            while parent in parents and count < len(parents):
                count, parent = count + 1, parents[parent]
            return count

        return sorted(shards, key=generation)

    def undelivered(self) -> dict[str, int]:
        """Per shard, records the mapping would deliver that are still after its checkpoint:
        a fresh read by the same rules, which finds none after a complete run."""
        left: dict[str, int] = {}
        for shard in self.shards():
            count = 0
            for page, drained in self._pages(shard, self.checkpoints.shards.get(shard["ShardId"])):
                count += sum(self._filters.selects(record) for record in page)
                if drained:
                    break
            if count:
                left[shard["ShardId"]] = count
        return left

    def _drain(self, shard: Mapping[str, Any], stats: RunStats) -> None:
        """Deliver a shard's records after its checkpoint, in batches, until it is drained."""
        shard_id = shard["ShardId"]
        last = self.checkpoints.shards.get(shard_id, "")
        batch: list[dict[str, Any]] = []
        deadline: float | None = None  # of the batching window, once the reader caught up
        for page, drained in self._pages(shard, last or None):
            for record in page:
                last = record["dynamodb"]["SequenceNumber"]
                stats.records_read += 1
                if not self._filters.selects(record):
                    stats.records_filtered_out += 1
                    continue
                batch.append(record)
                if len(batch) == self._batch_size:
                    self._finish(batch, shard_id, stats, last)
                    batch, deadline = [], None
            if batch and not page:
                deadline = time.monotonic() + self._window_s if deadline is None else deadline
                if time.monotonic() >= deadline:
                    self._finish(batch, shard_id, stats, last)
                    batch, deadline = [], None
            if not batch and last and self.checkpoints.shards.get(shard_id) != last:
                self.checkpoints.done(shard_id, last)  # records filtered out, none pending
            if drained and not batch:  # (a batch in its window keeps the reader polling)
                break
        if batch:
            self._finish(batch, shard_id, stats, last)

    def _pages(
        self, shard: Mapping[str, Any], after: str | None
    ) -> Iterator[tuple[list[dict[str, Any]], bool]]:
        """The shard's ``GetRecords`` pages after ``after``, empty ones included, each with
        whether the shard is now drained.

        An empty page is not the end of a shard: a closed shard ends where it has no next
        iterator; an open one is drained after ``empty_pages`` consecutive empty pages,
        ``poll_interval_s`` apart (the reader may poll on, e.g. for a batching window).
        """
        is_open = _is_open(shard)
        # StartingPosition is where a new mapping starts; the child of a shard it was
        # reading holds the records after the parent's, from the child's first one.
        start = self._starting_position
        if shard.get("ParentShardId") in self.checkpoints.shards:
            start = "TRIM_HORIZON"
        position = (
            {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": after}
            if after
            else {"ShardIteratorType": start}
        )
        iterator = self._streams.get_shard_iterator(
            StreamArn=self._stream_arn, ShardId=shard["ShardId"], **position
        )["ShardIterator"]
        empty = 0
        while iterator:
            page = self._streams.get_records(ShardIterator=iterator, Limit=1000)
            empty = 0 if page["Records"] else empty + 1
            records = [self._shape(record) for record in page["Records"]]
            yield records, is_open and empty >= self._empty_pages
            if empty:
                self._sleep(self._poll_interval_s)
            iterator = page.get("NextShardIterator")

    def _shape(self, record: Mapping[str, Any]) -> dict[str, Any]:
        return lambda_record(record, self._stream_arn, self._region)

    def _finish(
        self, batch: list[dict[str, Any]], shard_id: str, stats: RunStats, through: str
    ) -> None:
        """Deliver a batch; then (only then) everything read up to ``through`` is finished."""
        self._deliver(batch, shard_id, stats, attempts=0)
        self.checkpoints.done(shard_id, through)
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


def _is_open(shard: Mapping[str, Any]) -> bool:
    """Whether a shard (as ``DescribeStream`` lists it) may still get records."""
    return "EndingSequenceNumber" not in shard.get("SequenceNumberRange", {})


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


@dataclass(frozen=True)
class MappingFilters:
    """An event source mapping's ``FilterCriteria``, matched as Lambda matches them.

    The one matcher of the project: the local mapping and redrive both use it, so a
    record the mapping would filter out is never deleted by a replay either.
    """

    patterns: tuple[Any, ...] = ()

    @classmethod
    def of(cls, properties: Mapping[str, Any]) -> MappingFilters:
        """The filters of a mapping's properties (template or ``GetEventSourceMapping`` shape)."""
        filters = (properties.get("FilterCriteria") or {}).get("Filters") or []
        if not filters:
            return cls()
        from moto.events.models import EventPattern

        patterns = [f.get("Pattern") if isinstance(f, Mapping) else None for f in filters]
        if not all(isinstance(pattern, str) for pattern in patterns):
            # Dropping it would select more than the mapping does: never guess wider.
            raise ValueError("a FilterCriteria filter has no Pattern string")
        return cls(tuple(EventPattern.load(pattern) for pattern in patterns))

    def selects(self, record: Mapping[str, Any]) -> bool:
        """Whether the mapping delivers ``record`` (no filters: every record)."""
        return not self.patterns or any(p.matches_event(record) for p in self.patterns)
